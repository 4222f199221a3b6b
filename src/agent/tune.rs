//! `pigsty agent tune`: at every boot, before Patroni starts (pigsty-tune.service),
//! size what follows the machine for the machine this node booted on: PostgreSQL's
//! memory, parallelism and WAL sizes (`pg_conf`, `pg_shared_buffer_ratio`) and the
//! kernel's shared-memory limits, transparent huge pages and CPU governor
//! (`node_tune`). The formulas are Pigsty's (`plan::sizing`); the image holds the same
//! values for a reference machine.
//!
//! Patroni reads `/run/pigsty/patroni.yml`: the image's `/etc/patroni/patroni.yml` with
//! each line marked "sized at boot" given this machine's value. Nothing under /etc is
//! changed, so the root may be read-only.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::model::NodeTune;
use crate::plan::node_json::NodeJson;
use crate::plan::sizing::{self, Hardware};

/// Where Patroni reads its sized configuration (relative to the root).
pub const PATRONI_RUN: &str = "run/pigsty/patroni.yml";
/// The sized kernel settings, for systemd-sysctl to apply again if it is rerun.
pub const SYSCTL_RUN: &str = "run/sysctl.d/60-pigsty-tune.conf";

/// What one run decided.
#[derive(Debug, Clone)]
pub struct Tuned {
    pub hardware: Hardware,
    pub kernel: Vec<(&'static str, String)>,
    pub pg: Vec<(&'static str, String)>,
}

impl Tuned {
    pub fn summary(&self) -> String {
        let mut s = format!("tuned for {}\n", self.hardware.describe());
        for (k, v) in self.pg.iter().chain(&self.kernel) {
            s.push_str(&format!("  {k} = {v}\n"));
        }
        s
    }
}

/// Size this node. `hardware` overrides what is measured (tests); the kernel and
/// `/sys` are written only when `root` is `/`.
pub fn tune(root: &Path, hardware: Option<Hardware>) -> anyhow::Result<Tuned> {
    let node = NodeJson::load(root)?;
    let live = root == Path::new("/");
    let fs_paths: Vec<String> = node
        .pg
        .as_ref()
        .map(|pg| pg.fs_paths.iter().map(|p| under(root, p)).collect())
        .unwrap_or_default();
    let hardware = match hardware {
        Some(h) => h,
        None => Hardware::detect(&fs_paths)?,
    };
    let kernel = if node.node.tune == NodeTune::None {
        Vec::new()
    } else {
        sizing::kernel(&hardware)
    };
    if !kernel.is_empty() {
        let mut text = String::from(
            "# Written by `pigsty agent tune` at boot: node_tune's shared-memory limits for this machine.\n",
        );
        for (k, v) in &kernel {
            text.push_str(&format!("{k} = {v}\n"));
        }
        write_file(&root.join(SYSCTL_RUN), text.as_bytes(), 0o644, None)?;
        if live {
            for (k, v) in &kernel {
                let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
                std::fs::write(&path, v).with_context(|| format!("setting {k} = {v}"))?;
            }
            tuned_sections(node.node.tune);
        }
    }
    let mut pg_values = Vec::new();
    if let Some(pg) = &node.pg
        && let Some(s) = &pg.sizing
    {
        pg_values = s.parameters(&hardware);
        let src = root.join(pg.patroni_config.trim_start_matches('/'));
        let text =
            std::fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        let (sized, done) = sizing::resize_yaml(&text, &pg_values);
        let missing: Vec<&str> = pg_values
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !done.iter().any(|d| d == k))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} has no line marked `{}` for {} (rendered by another version of pigsty?)",
                src.display(),
                sizing::SIZED_MARK,
                missing.join(", ")
            );
        }
        let owner = user_ids(root, &pg.dbsu)?;
        write_file(
            &root.join(PATRONI_RUN),
            sized.as_bytes(),
            0o600,
            Some(owner),
        )?;
    }
    Ok(Tuned {
        hardware,
        kernel,
        pg: pg_values,
    })
}

/// The `[vm]` and `[cpu]` sections of Pigsty's tuned profiles, where the machine has
/// them: transparent huge pages off; the `performance` CPU governor (not in `tiny`).
/// Best effort: a VM has no cpufreq, and a kernel may not offer THP.
fn tuned_sections(tune: NodeTune) {
    let thp = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    if thp.exists()
        && let Err(e) = std::fs::write(thp, "never")
    {
        tracing::warn!("transparent huge pages stay on: {e}");
    }
    if tune == NodeTune::Tiny {
        return;
    }
    let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return;
    };
    for cpu in cpus.flatten() {
        let gov = cpu.path().join("cpufreq/scaling_governor");
        if gov.exists()
            && let Err(e) = std::fs::write(&gov, "performance")
        {
            tracing::warn!("{}: {e}", gov.display());
        }
    }
}

fn under(root: &Path, p: &str) -> String {
    root.join(p.trim_start_matches('/'))
        .to_string_lossy()
        .into_owned()
}

/// The uid and gid of `user` in the root's /etc/passwd.
fn user_ids(root: &Path, user: &str) -> anyhow::Result<(u32, u32)> {
    let path = root.join("etc/passwd");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4 && f[0] == user)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .with_context(|| format!("no user {user} in {}", path.display()))
}

/// Write a file whole (`state::write_atomic`: a temporary beside it, then a rename),
/// then give it its owner. Patroni, which reads it, starts only after this unit.
fn write_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    super::state::write_atomic(path, bytes, mode)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}
