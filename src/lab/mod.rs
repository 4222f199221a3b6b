//! The lab: every node of an inventory booted as a qemu VM on this machine, from the
//! images `build-image` makes, on a private network namespace. It is the end-to-end
//! proof of the product: images boot, agents join, clusters form, fail over, and a
//! reimaged node rejoins.
//!
//! Layout of the lab directory (`--dir`, default `$PIGSTY_LAB` or
//! `~/.cache/pigsty/lab`):
//! - `lab.json`: the namespace, the bridge address and each node's tap and MAC;
//! - `images/<node>/`: the node's A/B disk (`build-image --format raw`) and
//!   `images/<node>.key`, what it was built from;
//! - `vms/<node>/`: the node's disk (copy-on-write over the image, larger than it: the
//!   data partition grows at first boot), its UEFI variables, serial console log,
//!   journal, qemu's pid file and log.
//!
//! Every node boots as a machine does: OVMF, then the systemd-boot on its disk, which
//! counts the boots of a slot on trial.
//!
//! Every command that talks to the VMs moves itself into the namespace first, so its
//! traffic stays there.

mod images;
pub mod logs;
pub mod net;
pub mod pxe;
mod status;
pub mod update;
pub mod vm;
mod wait;

pub use status::{StatusRow, status};
pub use wait::{Legs, legs_table};

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Fleet, Module, Node};
use vm::{Accel, VmPaths};

/// What `lab up` needs beyond the inventory.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub extra_trees: Vec<PathBuf>,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Bound of the wait for every agent to report done.
    pub timeout: Duration,
    pub cache: PathBuf,
    /// How the lab reaches its etcd (kept in lab.json).
    pub etcd_access: Option<crate::agent::etcd::AccessFiles>,
    /// Nodes booted from the network onto an empty disk (`lab up --pxe NODE`).
    pub pxe: Vec<String>,
}

/// The default lab directory.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PIGSTY_LAB").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    crate::image::layer::cache_dir().join("lab")
}

/// `lab.json`: what `lab up` created, so later commands find it and `lab down` removes
/// exactly that.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub inventory: String,
    pub netns: String,
    pub host_ip: String,
    pub prefix: u8,
    pub kvm: bool,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The timing the inventory gives etcd and Patroni (lab.yml chooses its own for
    /// guests that share two host cores); `lab status` shows it.
    #[serde(default)]
    pub timing: String,
    pub nodes: Vec<LabNode>,
    /// How to reach the lab's etcd (its CA, the operator's certificate, root); none
    /// when the lab's fleet runs without a CA. lab.json is 0600.
    #[serde(default)]
    pub etcd_access: Option<crate::agent::etcd::AccessFiles>,
    /// What the images were built with, so that `lab update` builds a node's new
    /// bundle over the same shared root.
    #[serde(default)]
    pub cache: Option<PathBuf>,
    #[serde(default)]
    pub extra_trees: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabNode {
    pub name: String,
    pub ip: String,
    pub mac: String,
    pub tap: String,
    /// Is an etcd member (its client URL is a place to read the fleet's state).
    pub etcd: Option<u16>,
    pub patroni: Option<u16>,
    /// The PostgreSQL instance (`pg-lab-1`): Patroni's member name.
    pub instance: Option<String>,
    /// haproxy's stats page, when the node runs haproxy (lab.json is 0600: it holds
    /// the stats password).
    #[serde(default)]
    pub haproxy: Option<HaproxyStats>,
    /// The admin user the lab logs in as (`lab ssh`), when the node has one.
    #[serde(default)]
    pub admin: Option<String>,
}

/// Where `lab status` reads haproxy's view of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HaproxyStats {
    pub cluster: String,
    /// `http://ip:port/haproxy/<node>/;csv`.
    pub stats_csv: String,
    pub user: String,
    pub password: String,
}

pub struct Lab {
    pub dir: PathBuf,
    pub state: LabState,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

fn need_root() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the lab needs root: it creates a network namespace, taps and VMs");
    }
    Ok(())
}

/// The namespace of a lab directory: one per directory, so two labs can coexist.
fn netns_name(dir: &Path) -> String {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let h = hex::encode(Sha256::digest(abs.to_string_lossy().as_bytes()));
    format!("pigsty-lab-{}", &h[..8])
}

impl Lab {
    /// The lab of `dir`, as `lab up` left it.
    pub fn open(dir: &Path) -> anyhow::Result<Lab> {
        let path = state_path(dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no lab at {} (run `pigsty lab up`)", dir.display()))?;
        let state =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        Ok(Lab {
            dir: dir.to_path_buf(),
            state,
        })
    }

    pub fn node(&self, name: &str) -> anyhow::Result<&LabNode> {
        self.state
            .nodes
            .iter()
            .find(|n| n.name == name || n.ip == name)
            .with_context(|| {
                let names: Vec<&str> = self.state.nodes.iter().map(|n| n.name.as_str()).collect();
                format!("the lab has no node {name} (it has {})", names.join(", "))
            })
    }

    pub fn vm(&self, name: &str) -> VmPaths {
        VmPaths {
            dir: self.dir.join("vms").join(name),
        }
    }

    fn image_dir(&self, name: &str) -> PathBuf {
        self.dir.join("images").join(name)
    }

    fn image_key(&self, name: &str) -> anyhow::Result<String> {
        let p = self.dir.join("images").join(format!("{name}.key"));
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .with_context(|| format!("reading {}", p.display()))
    }

    /// Boot one node from its current disk (a fresh one when it has none).
    pub fn start(&self, name: &str) -> anyhow::Result<u32> {
        let node = self.node(name)?.clone();
        let paths = self.vm(&node.name);
        if let Some(pid) = vm::read_pid(&paths)? {
            bail!("{} is already running (qemu pid {pid})", node.name);
        }
        let key = self.image_key(&node.name)?;
        if !paths.disk().exists() {
            vm::fresh_disk(&self.image_dir(&node.name), &paths, &key)?;
        } else if std::fs::read_to_string(paths.image_key())
            .unwrap_or_default()
            .trim()
            != key
        {
            bail!(
                "{}'s disk was made from another image than the one in {}: reimage it (`pigsty lab reimage {}`)",
                node.name,
                self.image_dir(&node.name).display(),
                node.name
            );
        }
        net::create(
            &self.state.netns,
            self.state.host_ip.parse().context("host_ip in lab.json")?,
            self.state.prefix,
            std::slice::from_ref(&node.tap),
        )?;
        let pid = vm::start(&vm::Boot {
            name: &node.name,
            paths: &paths,
            netns: &self.state.netns,
            tap: &node.tap,
            mac: &node.mac,
            memory_mib: self.state.memory_mib,
            cpus: self.state.cpus,
            kvm: self.state.kvm,
            network_first: false,
        })?;
        tracing::info!(node = %node.name, pid, "started");
        let now = crate::agent::state::now();
        std::fs::write(paths.booted_at(), format!("{now}\n"))
            .with_context(|| format!("writing {}", paths.booted_at().display()))?;
        Ok(pid)
    }

    /// Power-cut one node (SIGKILL its qemu). False when it was not running.
    pub fn kill(&self, name: &str) -> anyhow::Result<bool> {
        let node = self.node(name)?;
        vm::kill(&self.vm(&node.name))
    }

    /// Reimage one node: power it off, give it a fresh disk from its image (same
    /// identity), forget what it reported to etcd, and boot it.
    pub fn reimage(&self, name: &str) -> anyhow::Result<u32> {
        let node = self.node(name)?.clone();
        let paths = self.vm(&node.name);
        vm::kill(&paths)?;
        let key = self.image_key(&node.name)?;
        vm::fresh_disk(&self.image_dir(&node.name), &paths, &key)?;
        self.forget_report(&node.name);
        self.start(&node.name)
    }

    /// Remove a node's report under /pigsty/nodes/ so a wait sees only what its new
    /// incarnation reports. Best effort: with no etcd up there is nothing to forget.
    fn forget_report(&self, name: &str) {
        let key = format!("{}{name}", crate::agent::NODES_PREFIX);
        let endpoints = self.etcd_endpoints();
        // Bounded retries: the node just killed may have led Raft, and the others
        // answer nothing that needs quorum until they elect a leader.
        let done = net::within(&self.state.netns, || {
            let access = self.etcd_access()?;
            let start = std::time::Instant::now();
            let mut last = String::from("no etcd endpoint");
            for _ in 0..30 {
                for url in &endpoints {
                    match crate::agent::etcd::Client::with(url, Duration::from_secs(10), &access)
                        .and_then(|c| c.delete(&key))
                    {
                        Ok(()) => return Ok(()),
                        Err(e) => last = format!("{url}: {e:#}"),
                    }
                }
                if start.elapsed() > Duration::from_secs(60) {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            bail!("no etcd endpoint took the delete within 60 s; last: {last}")
        });
        if let Err(e) = done {
            tracing::warn!("forgetting {name}'s report: {e:#}");
        }
    }

    pub fn etcd_endpoints(&self) -> Vec<String> {
        let scheme = if self.state.etcd_access.is_some() {
            "https"
        } else {
            "http"
        };
        self.state
            .nodes
            .iter()
            .filter_map(|n| n.etcd.map(|port| format!("{scheme}://{}:{port}", n.ip)))
            .collect()
    }

    /// How to reach the lab's etcd (TLS and root, when its fleet has a CA).
    pub fn etcd_access(&self) -> anyhow::Result<crate::agent::etcd::Access> {
        crate::agent::etcd::load_access(self.state.etcd_access.as_ref())
    }
}

/// `lab up`: build what is missing, create the network, boot every node that is not
/// running, and wait until every agent reports done. Returns the lab and the time from
/// the first qemu start to the last node done.
pub fn up(fleet: &Fleet, opts: &UpOptions) -> anyhow::Result<(Lab, Duration)> {
    need_root()?;
    for tool in ["qemu-system-x86_64", "qemu-img", "ip"] {
        crate::sys::require(tool)?;
    }
    vm::require_ovmf()?;
    // The lab's operator key, among every admin user's keys (`lab ssh`).
    let fleet = &update::with_operator_key(fleet, &update::ensure_ssh_key(&opts.dir)?);
    images::check_minio_binary(fleet, &opts.extra_trees)?;
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let dir = std::fs::canonicalize(&opts.dir)?;
    let previous = Lab::open(&dir).ok();
    if let Some(p) = &previous
        && p.state.inventory != fleet.source
    {
        tracing::warn!(
            "{} held a lab of {}; it now runs {}",
            dir.display(),
            p.state.inventory,
            fleet.source
        );
    }
    let ips: Vec<Ipv4Addr> = fleet.nodes.iter().map(|n| n.ip).collect();
    let prefix = fleet.nodes.first().map_or(24, |n| n.node.node_ip_prefix);
    let host = net::host_address(&ips, prefix)?;
    let state = LabState {
        inventory: fleet.source.clone(),
        netns: netns_name(&dir),
        host_ip: host.to_string(),
        prefix,
        kvm: false,
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        timing: timing_of(fleet),
        etcd_access: opts.etcd_access.clone(),
        cache: Some(opts.cache.clone()),
        extra_trees: opts.extra_trees.clone(),
        nodes: fleet
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| lab_node(i, n))
            .collect(),
    };
    let mut lab = Lab { dir, state };
    // Each --pxe NODE by its nodename.
    let pxe: Vec<String> = opts
        .pxe
        .iter()
        .map(|n| lab.node(n).map(|n| n.name.clone()))
        .collect::<anyhow::Result<_>>()?;
    images::build_missing(fleet, &lab, opts)?;
    // Probed with a node's own kernel, once the images exist.
    lab.state.kvm = match opts.accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => lab
            .state
            .nodes
            .first()
            .and_then(|n| images::kernel(&lab.image_dir(&n.name)).ok())
            .is_some_and(|k| vm::kvm_works(&k)),
    };
    let text = serde_json::to_vec_pretty(&lab.state)?;
    let tmp = lab.dir.join(".lab.json.tmp");
    write_private(&tmp, &text)?;
    std::fs::rename(&tmp, state_path(&lab.dir))
        .with_context(|| format!("writing {}", state_path(&lab.dir).display()))?;
    let taps: Vec<String> = lab.state.nodes.iter().map(|n| n.tap.clone()).collect();
    net::create(&lab.state.netns, host, prefix, &taps)?;
    eprintln!(
        "lab: network namespace {} with bridge {}/{prefix}; {} VMs under {} ({} vCPU, {} MiB each)\nlab: timing: {}",
        lab.state.netns,
        host,
        lab.state.nodes.len(),
        if lab.state.kvm { "KVM" } else { "TCG" },
        lab.state.cpus,
        lab.state.memory_mib,
        lab.state.timing
    );
    let started = Instant::now();
    let mut network_boots = Vec::new();
    for node in &lab.state.nodes {
        if vm::read_pid(&lab.vm(&node.name))?.is_some() {
            eprintln!("lab: {} is running", node.name);
            continue;
        }
        if pxe.contains(&node.name) {
            network_boots.push(node.name.clone());
            continue;
        }
        let pid = lab.start(&node.name)?;
        eprintln!(
            "lab: {} ({}) booting through UEFI, qemu pid {pid}, console {}",
            node.name,
            node.ip,
            lab.vm(&node.name).serial().display()
        );
    }
    // The others boot meanwhile; each of these is installed, then boots its disk.
    for name in &network_boots {
        let done = lab.pxe(fleet, name, opts.timeout, false)?;
        eprintln!(
            "lab: {name} installed over the network in {:.0} s, booting from its disk",
            done.installed_secs
        );
    }
    // The wait runs inside the namespace: all of its traffic stays there.
    net::within(&lab.state.netns, || lab.wait_done(opts.timeout))?;
    Ok((lab, started.elapsed()))
}

/// The etcd and Patroni timing of the lab's inventory, in one line.
fn timing_of(fleet: &Fleet) -> String {
    let mut parts = Vec::new();
    if let Some(e) = fleet.nodes.iter().find_map(|n| n.etcd.as_ref()) {
        parts.push(format!(
            "etcd heartbeat {} ms, election {} ms",
            e.params.etcd_heartbeat_interval, e.params.etcd_election_timeout
        ));
    }
    if let Some(pg) = fleet.nodes.iter().find_map(|n| n.pg.as_ref()) {
        let t = pg.params.rto_timings();
        parts.push(format!(
            "patroni ttl {} s, loop_wait {} s, retry_timeout {} s",
            t.ttl, t.loop_wait, t.retry_timeout
        ));
        if let Some(c) = pg.params.rto_checks() {
            parts.push(format!(
                "haproxy checks every {} ms ({} ms while changing, {} ms when down)",
                c.inter_ms, c.fastinter_ms, c.downinter_ms
            ));
        }
    }
    parts.join("; ")
}

/// Write a file only root can read (it holds a password).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn lab_node(i: usize, n: &Node) -> LabNode {
    LabNode {
        name: n.nodename.clone(),
        ip: n.ip.to_string(),
        mac: n
            .node
            .node_mac
            .clone()
            .unwrap_or_else(|| net::mac_for(n.ip)),
        tap: format!("tap{i}"),
        etcd: n.etcd.as_ref().map(|e| e.params.etcd_port),
        patroni: n
            .modules
            .contains(&Module::Pgsql)
            .then(|| n.pg.as_ref().map(|p| p.params.patroni_port))
            .flatten(),
        instance: n.pg.as_ref().map(|p| p.name.clone()),
        haproxy: n.pg.as_ref().filter(|_| n.haproxy()).map(|p| HaproxyStats {
            cluster: p.cluster.clone(),
            stats_csv: format!(
                "http://{}:{}/haproxy/{}/;csv",
                n.ip, n.node.haproxy_exporter_port, n.nodename
            ),
            user: n.node.haproxy_admin_username.clone(),
            password: n.node.haproxy_admin_password.clone(),
        }),
        admin: n
            .node
            .node_admin_enabled
            .0
            .then(|| n.node.node_admin_username.clone()),
    }
}

/// `lab down`: stop every VM of the lab and remove its namespace; with `purge`, the
/// disks too. Consoles and journals stay (under `vms/<node>/`) so a failed run can be
/// read afterwards; the next fresh disk moves them aside. Images stay: they are a cache.
pub fn down(dir: &Path, purge: bool) -> anyhow::Result<Vec<String>> {
    need_root()?;
    let lab = Lab::open(dir)?;
    let mut stopped = Vec::new();
    // The nodes, and the machine of no node `lab pxe --stranger` boots (left running
    // only when lab pxe itself was killed).
    let names: Vec<String> = lab
        .state
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .chain([pxe::STRANGER.to_string()])
        .collect();
    for name in &names {
        if vm::kill(&lab.vm(name))? {
            stopped.push(name.clone());
        }
    }
    // And the dnsmasq of a `lab pxe` that was killed.
    if let Some(pid) =
        crate::serve::dhcp::stop_left(&crate::serve::fleet::state_dir(&lab.dir.join("pxe")))?
    {
        stopped.push(format!("dnsmasq (pid {pid})"));
    }
    net::delete(&lab.state.netns)?;
    if purge {
        for name in &names {
            let paths = lab.vm(name);
            for f in [paths.disk(), paths.image_key(), paths.pidfile()] {
                match std::fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing {}", f.display()));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(stopped)
}

/// Where a node's logs are kept, for messages that point at them.
pub fn logs_hint(lab: &Lab) -> String {
    format!(
        "consoles and journals are kept under {}/vms/<node>/ (serial.log, journal.json; \
         `pigsty lab logs NODE [UNIT]` prints a journal)",
        lab.dir.display()
    )
}

/// `lab logs NODE [UNIT]`: the node's journal as the host keeps it.
pub fn logs(lab: &Lab, name: &str, unit: Option<&str>) -> anyhow::Result<String> {
    let node = lab.node(name)?;
    let path = lab.vm(&node.name).journal();
    if !path.exists() {
        bail!(
            "{} has no journal at {} yet (its image may predate the journal port, or it has \
             not booted)",
            node.name,
            path.display()
        );
    }
    Ok(logs::render(&logs::read(&path)?, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_nodes_get_taps_macs_and_ports() {
        let fleet = crate::inventory::load(&crate::inventory::Source::BuiltInLab)
            .unwrap()
            .fleet;
        let nodes: Vec<LabNode> = fleet
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| lab_node(i, n))
            .collect();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].tap, "tap0");
        assert_eq!(nodes[0].etcd, Some(2379));
        assert_eq!(nodes[0].patroni, Some(8008));
        assert_eq!(nodes[1].mac, "52:54:00:0a:0a:0c");
    }
}
