//! Settings derived from the machine: PostgreSQL's memory, parallelism and WAL sizes
//! (the `pg_conf` templates) and the kernel's shared-memory limits (`node_tune`).
//!
//! Pigsty computes them once, at install time, from facts Ansible gathers on the host:
//! `node_cpu` (the `processor` lines of /proc/cpuinfo), `node_mem_mb` (physical pages
//! times the page size, rounded up to MiB) and `node_fs_bytes` (the size of the
//! filesystem holding `pg_fs_main`). An image is built before its machine exists and one
//! image may boot on machines of different sizes, so here the same formulas run twice:
//! at build time for a reference machine ([`Hardware::REFERENCE`], what the files in the
//! image show), and on the node at every boot, before Patroni starts, for the machine it
//! booted on (`pigsty agent tune`, see `agent::tune`).
//!
//! Every formula follows Pigsty 4.5's `roles/pgsql/templates/{oltp,olap,crit,tiny}.yml`
//! and `roles/node/templates/tuned-*.conf`, in the same floating-point arithmetic
//! (Jinja's `round(0, 'ceil')` of a float product is `f64::ceil` here).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::model::PgConf;

/// The facts the formulas read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// Logical CPUs (`node_cpu`).
    pub cpus: u32,
    /// Physical memory in bytes (`node_mem_bytes`: pages times page size).
    pub mem_bytes: u64,
    /// Size of the filesystem that holds the data (`node_fs_bytes`).
    pub fs_bytes: u64,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

impl Hardware {
    /// The machine the files of an image are sized for until the node sizes them for
    /// itself: 2 CPUs, 4 GiB of memory, a 40 GiB data filesystem (the size Pigsty
    /// assumes when it cannot measure the filesystem).
    pub const REFERENCE: Hardware = Hardware {
        cpus: 2,
        mem_bytes: 4 * GIB,
        fs_bytes: 40 * GIB,
    };

    /// `node_mem_mb`: memory in MiB, rounded up.
    pub fn mem_mib(&self) -> u64 {
        self.mem_bytes.div_ceil(MIB)
    }

    /// This machine: CPUs from /proc/cpuinfo, memory from /proc/meminfo, and the size
    /// of the filesystem of the first of `fs_paths` that is a directory, as Pigsty
    /// measures `pg_fs_main`; when none is yet, the filesystem the last one (the data
    /// directory) will be made on.
    pub fn detect(fs_paths: &[String]) -> anyhow::Result<Hardware> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let cpus = cpu_count(&cpuinfo).context("no processor in /proc/cpuinfo")?;
        let mem_bytes = mem_total(&meminfo).context("no MemTotal in /proc/meminfo")?;
        let measured = fs_paths
            .iter()
            .map(Path::new)
            .find(|p| p.is_dir())
            .map(Path::to_path_buf)
            .or_else(|| {
                fs_paths
                    .last()
                    .and_then(|p| existing_ancestor(Path::new(p)))
            });
        let fs_bytes = match measured {
            Some(p) => fs_size(&p)?,
            None => Hardware::REFERENCE.fs_bytes,
        };
        Ok(Hardware {
            cpus,
            mem_bytes,
            fs_bytes,
        })
    }

    /// `2 CPU, 1450 MiB, 9.8 GiB`.
    pub fn describe(&self) -> String {
        format!(
            "{} CPU, {} MiB memory, {:.1} GiB data filesystem",
            self.cpus,
            self.mem_mib(),
            self.fs_bytes as f64 / GIB as f64
        )
    }
}

/// The `processor` lines of /proc/cpuinfo (what Pigsty counts).
pub fn cpu_count(cpuinfo: &str) -> Option<u32> {
    let n = cpuinfo
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim_end() == "processor")
        })
        .count();
    u32::try_from(n).ok().filter(|n| *n > 0)
}

/// MemTotal of /proc/meminfo, in bytes (the physical pages the kernel manages, which
/// is what `getconf _PHYS_PAGES` times the page size gives).
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

fn existing_ancestor(p: &Path) -> Option<std::path::PathBuf> {
    p.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}

/// Total size of the filesystem holding `path` (what `df --output=size` shows).
fn fs_size(path: &Path) -> anyhow::Result<u64> {
    let st = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok(st.f_blocks.saturating_mul(st.f_frsize))
}

/// What the PostgreSQL formulas need from the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgSizing {
    pub conf: PgConf,
    /// `max_connections`: `pg_max_conn`, or the template's choice for `auto`.
    pub max_connections: u32,
    /// `pg_shared_buffer_ratio`.
    pub shared_buffer_ratio: f64,
    pub version: u32,
    /// `timescaledb` is in `pg_libs` (its background workers follow the worker count).
    pub timescaledb: bool,
    /// Parameters `pg_parameters` sets: the inventory's value stands, nothing is sized.
    #[serde(default)]
    pub fixed: Vec<String>,
}

impl PgSizing {
    fn pick<T>(&self, oltp: T, olap: T, crit: T, tiny: T) -> T {
        match self.conf {
            PgConf::Oltp => oltp,
            PgConf::Olap => olap,
            PgConf::Crit => crit,
            PgConf::Tiny => tiny,
        }
    }

    /// The sized parameters of this template on `hw`, without the ones `pg_parameters`
    /// fixes.
    pub fn parameters(&self, hw: &Hardware) -> Vec<(&'static str, String)> {
        let cpu = f64::from(hw.cpus);
        let mem_mb = hw.mem_mib();
        let shared = (mem_mb as f64 * self.shared_buffer_ratio).ceil() as u64;
        let maintenance = (shared as f64 * self.pick(0.25, 0.50, 0.25, 0.25)).ceil() as u64;
        let cache = mem_mb.saturating_sub(shared);
        let (work_floor, work_cap) = self.pick((64, 1024), (64, 8192), (64, 1024), (16, 256));
        let per_conn = (shared as f64 / f64::from(self.max_connections.max(1))).floor() as u64;
        let work_mem = per_conn.max(work_floor).min(work_cap);
        // One twentieth of the disk in GiB steps of 20 GiB, between 1 and 100.
        let twentieth = ((hw.fs_bytes as f64 / 21_474_836_480.0).ceil() as u64).clamp(1, 100);
        let workers = self.pick(
            (hw.cpus + 8).max(16),
            (hw.cpus + 12).max(20),
            (hw.cpus + 8).max(16),
            (hw.cpus + 4).max(12),
        );
        let parallel = self.pick(
            ((cpu * 0.5).ceil() as u32).max(2),
            ((cpu * 0.8).ceil() as u32).max(2),
            ((cpu * 0.5).ceil() as u32).max(2),
            ((cpu * 0.5).floor() as u32).max(1),
        );
        let per_gather = self.pick(
            ((cpu * 0.2).floor() as u32).clamp(2, 8),
            ((cpu * 0.5).floor() as u32).max(2),
            0,
            0,
        );
        let maintenance_workers = self.pick(
            ((cpu * 0.33).ceil() as u32).max(2),
            ((cpu * 0.33).ceil() as u32).max(2),
            ((cpu * 0.33).ceil() as u32).max(2),
            ((cpu * 0.33).floor() as u32).max(1),
        );
        let temp_limit = self.pick(
            twentieth.min(200),
            (twentieth * 4).min(2000),
            twentieth.min(200),
            twentieth.min(200),
        );
        let mut out = vec![
            ("max_worker_processes", (workers + 8).to_string()),
            ("shared_buffers", format!("{shared}MB")),
            ("maintenance_work_mem", format!("{maintenance}MB")),
            ("work_mem", format!("{work_mem}MB")),
            ("effective_cache_size", format!("{cache}MB")),
            ("max_parallel_workers", parallel.to_string()),
            (
                "max_parallel_maintenance_workers",
                maintenance_workers.to_string(),
            ),
            ("max_parallel_workers_per_gather", per_gather.to_string()),
            ("temp_file_limit", format!("{temp_limit}GB")),
            ("min_wal_size", format!("{}GB", twentieth.min(200))),
            ("max_wal_size", format!("{}GB", (twentieth * 4).min(2000))),
            (
                "max_slot_wal_keep_size",
                format!("{}GB", (twentieth * 6).min(3000)),
            ),
        ];
        if self.version == 18 {
            let io = self.pick(
                ((cpu * 0.25).ceil() as u32).clamp(4, 16),
                ((cpu * 0.5).ceil() as u32).clamp(4, 32),
                ((cpu * 0.25).ceil() as u32).clamp(4, 8),
                3,
            );
            out.push(("io_workers", io.to_string()));
        }
        if self.timescaledb {
            out.push(("timescaledb.max_background_workers", workers.to_string()));
        }
        out.retain(|(k, _)| !self.fixed.iter().any(|f| f.eq_ignore_ascii_case(k)));
        out
    }
}

/// The kernel settings of a `node_tune` profile that follow the machine's memory:
/// shared memory up to three quarters of it.
pub fn kernel(hw: &Hardware) -> Vec<(&'static str, String)> {
    const PAGE: u64 = 4096;
    let pages = hw.mem_bytes / PAGE;
    vec![
        ("kernel.shmall", ((pages as f64 * 0.75) as u64).to_string()),
        (
            "kernel.shmmax",
            ((hw.mem_bytes as f64 * 0.75) as u64).to_string(),
        ),
    ]
}

/// The comment that marks a sized line in a rendered file: the agent replaces the
/// value of every line that ends with it, and only those.
pub const SIZED_MARK: &str = "# sized at boot";

/// Replace the value of each `key: value  # sized at boot` line (YAML, as the
/// patroni.yml template writes them: `"key": "value"`) whose key `values` has. Lines
/// without the mark are left as they are. Returns the text and the keys replaced.
pub fn resize_yaml(text: &str, values: &[(&str, String)]) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut done = Vec::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let replaced = body.strip_suffix(SIZED_MARK).and_then(|head| {
            let indent = &head[..head.len() - head.trim_start().len()];
            let (key, _) = head.trim_start().split_once(": ")?;
            let name = key.trim_matches('"');
            let (_, v) = values.iter().find(|(k, _)| *k == name)?;
            let value = serde_json::to_string(v).ok()?;
            done.push(name.to_string());
            Some(format!("{indent}{key}: {value}  {SIZED_MARK}"))
        });
        match replaced {
            Some(l) => {
                out.push_str(&l);
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            None => out.push_str(line),
        }
    }
    (out, done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizing(conf: PgConf, conns: u32) -> PgSizing {
        PgSizing {
            conf,
            max_connections: conns,
            shared_buffer_ratio: 0.25,
            version: 17,
            timescaledb: false,
            fixed: vec![],
        }
    }

    fn get(v: &[(&'static str, String)], k: &str) -> String {
        v.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} not sized"))
    }

    /// Values worked out by hand from Pigsty 4.5's oltp.yml for a 16-CPU, 64 GiB node
    /// with a 1 TiB data filesystem and 1000 connections.
    #[test]
    fn oltp_on_a_big_node() {
        let hw = Hardware {
            cpus: 16,
            mem_bytes: 64 * GIB,
            fs_bytes: 1024 * GIB,
        };
        let v = sizing(PgConf::Oltp, 1000).parameters(&hw);
        assert_eq!(get(&v, "shared_buffers"), "16384MB");
        assert_eq!(get(&v, "maintenance_work_mem"), "4096MB");
        assert_eq!(get(&v, "effective_cache_size"), "49152MB");
        // 16384 / 1000 = 16, raised to the floor of 64.
        assert_eq!(get(&v, "work_mem"), "64MB");
        assert_eq!(get(&v, "max_worker_processes"), "32"); // max(16+8, 16) + 8
        assert_eq!(get(&v, "max_parallel_workers"), "8");
        assert_eq!(get(&v, "max_parallel_workers_per_gather"), "3"); // floor(3.2)
        assert_eq!(get(&v, "max_parallel_maintenance_workers"), "6"); // ceil(5.28)
        // ceil(1024 / 20) = 52.
        assert_eq!(get(&v, "min_wal_size"), "52GB");
        assert_eq!(get(&v, "max_wal_size"), "208GB");
        assert_eq!(get(&v, "max_slot_wal_keep_size"), "312GB");
        assert_eq!(get(&v, "temp_file_limit"), "52GB");
    }

    #[test]
    fn templates_differ_where_pigstys_do() {
        let hw = Hardware {
            cpus: 4,
            mem_bytes: 8 * GIB,
            fs_bytes: 100 * GIB,
        };
        let olap = sizing(PgConf::Olap, 500).parameters(&hw);
        assert_eq!(get(&olap, "maintenance_work_mem"), "1024MB"); // half of 2048
        assert_eq!(get(&olap, "work_mem"), "64MB"); // floor(2048 / 500) = 4 -> 64
        assert_eq!(get(&olap, "max_worker_processes"), "28"); // max(16, 20) + 8
        assert_eq!(get(&olap, "max_parallel_workers"), "4"); // ceil(3.2)
        assert_eq!(get(&olap, "temp_file_limit"), "20GB"); // 5 * 4
        let crit = sizing(PgConf::Crit, 1000).parameters(&hw);
        assert_eq!(get(&crit, "max_parallel_workers_per_gather"), "0");
        let tiny = sizing(PgConf::Tiny, 250).parameters(&hw);
        assert_eq!(get(&tiny, "max_worker_processes"), "20"); // max(8, 12) + 8
        assert_eq!(get(&tiny, "max_parallel_workers"), "2"); // floor(2.0)
        assert_eq!(get(&tiny, "max_parallel_maintenance_workers"), "1"); // floor(1.32)
        assert_eq!(get(&tiny, "work_mem"), "16MB"); // floor(2048 / 250) = 8 -> 16
    }

    #[test]
    fn pg18_io_workers_and_fixed_parameters() {
        let hw = Hardware {
            cpus: 32,
            mem_bytes: 128 * GIB,
            fs_bytes: 4096 * GIB,
        };
        let mut s = sizing(PgConf::Oltp, 500);
        s.version = 18;
        s.fixed = vec!["Shared_Buffers".into()];
        let v = s.parameters(&hw);
        assert_eq!(get(&v, "io_workers"), "8"); // ceil(32 * 0.25)
        assert!(v.iter().all(|(k, _)| *k != "shared_buffers"));
        // One twentieth: ceil(4096 / 20) = 205, capped at 100.
        assert_eq!(get(&v, "min_wal_size"), "100GB");
        assert_eq!(get(&v, "max_slot_wal_keep_size"), "600GB");
    }

    #[test]
    fn facts_from_proc() {
        let cpuinfo = "processor\t: 0\nmodel name\t: QEMU\n\nprocessor\t: 1\nmodel name\t: QEMU\n";
        assert_eq!(cpu_count(cpuinfo), Some(2));
        assert_eq!(cpu_count("model name: x\n"), None);
        assert_eq!(
            mem_total("MemTotal:        1485472 kB\nMemFree: 1 kB\n"),
            Some(1_485_472 * 1024)
        );
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        let hw = Hardware {
            cpus: 1,
            mem_bytes: 1_485_472 * 1024,
            fs_bytes: 0,
        };
        assert_eq!(hw.mem_mib(), 1451); // 1450.65 rounded up
        let k = kernel(&hw);
        assert_eq!(k[0], ("kernel.shmall", "278526".to_string()));
        assert_eq!(k[1], ("kernel.shmmax", "1140842496".to_string()));
    }

    #[test]
    fn only_marked_lines_are_resized() {
        let text = "    \"shared_buffers\": \"1024MB\"  # sized at boot\n    \"work_mem\": \"64MB\"\n  \"max_worker_processes\": \"24\"  # sized at boot\n";
        let (out, done) = resize_yaml(
            text,
            &[
                ("shared_buffers", "363MB".into()),
                ("work_mem", "1MB".into()),
                ("max_worker_processes", "24".into()),
            ],
        );
        assert_eq!(
            out,
            "    \"shared_buffers\": \"363MB\"  # sized at boot\n    \"work_mem\": \"64MB\"\n  \"max_worker_processes\": \"24\"  # sized at boot\n"
        );
        assert_eq!(done, ["shared_buffers", "max_worker_processes"]);
    }
}
