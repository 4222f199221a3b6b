//! The lab: every node of an inventory booted as a qemu VM on this machine, from the
//! images `build-image` makes, on a private network namespace. It is the end-to-end
//! proof of the product: images boot, agents join, clusters form, fail over, and a
//! reimaged node rejoins.
//!
//! Layout of the lab directory (`--dir`, default `$PIGSTY_LAB` or
//! `~/.cache/pigsty/lab`):
//! - `lab.json`: the namespace, the bridge address and each node's tap and MAC;
//! - `images/<node>/`: the node's raw image (`build-image --format raw`) and
//!   `images/<node>.key`, what it was built from;
//! - `vms/<node>/`: the node's disk (copy-on-write over the image), serial console log,
//!   qemu's pid file and log.
//!
//! Every command that talks to the VMs moves itself into the namespace first, so its
//! traffic stays there.

pub mod net;
pub mod vm;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
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
    pub nodes: Vec<LabNode>,
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
}

pub struct Lab {
    pub dir: PathBuf,
    pub state: LabState,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

fn need_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
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
            image_dir: &self.image_dir(&node.name),
            paths: &paths,
            netns: &self.state.netns,
            tap: &node.tap,
            mac: &node.mac,
            memory_mib: self.state.memory_mib,
            cpus: self.state.cpus,
            kvm: self.state.kvm,
        })?;
        tracing::info!(node = %node.name, pid, "started");
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
        // A fresh console log: the old one belongs to the machine that is gone.
        let serial = paths.serial();
        if serial.exists() {
            let _ = std::fs::rename(&serial, serial.with_extension("log.old"));
        }
        self.forget_report(&node.name);
        self.start(&node.name)
    }

    /// Remove a node's report under /pigsty/nodes/ so a wait sees only what its new
    /// incarnation reports. Best effort: with no etcd up there is nothing to forget.
    fn forget_report(&self, name: &str) {
        let key = format!("{}{name}", crate::agent::NODES_PREFIX);
        let endpoints = self.etcd_endpoints();
        let done = net::within(&self.state.netns, || {
            for url in &endpoints {
                let Ok(c) = crate::agent::etcd::Client::new(url, Duration::from_secs(3)) else {
                    continue;
                };
                if c.delete(&key).is_ok() {
                    return Ok(());
                }
            }
            bail!("no etcd endpoint answered")
        });
        if let Err(e) = done {
            tracing::warn!("forgetting {name}'s report: {e:#}");
        }
    }

    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.state
            .nodes
            .iter()
            .filter_map(|n| n.etcd.map(|port| format!("http://{}:{port}", n.ip)))
            .collect()
    }

    /// Wait until every node's agent reports done, or name the ones that did not.
    /// The calling thread must be in the lab's namespace (see [`net::enter`]).
    pub fn wait_done(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        let endpoints = self.etcd_endpoints();
        loop {
            let reported = if endpoints.is_empty() {
                BTreeMap::new()
            } else {
                crate::agent::read_fleet(&endpoints, Duration::from_secs(3)).unwrap_or_default()
            };
            let mut pending = Vec::new();
            for node in &self.state.nodes {
                let paths = self.vm(&node.name);
                if vm::read_pid(&paths)?.is_none() {
                    bail!(
                        "{}'s VM is not running; console tail:\n{}",
                        node.name,
                        vm::serial_tail(&paths, 30)
                    );
                }
                let (done, where_) = progress(reported.get(&node.name), &paths);
                if let Some(s) = reported.get(&node.name)
                    && s.current_step().status == crate::agent::state::StepStatus::Failed
                {
                    // The agent stops at a failed step; waiting longer cannot help.
                    bail!(
                        "{}'s first boot failed: {where_}\nconsole tail:\n{}",
                        node.name,
                        vm::serial_tail(&paths, 15)
                    );
                }
                if last.get(&node.name) != Some(&where_) {
                    eprintln!(
                        "[{:>5.1}s] {}: {where_}",
                        start.elapsed().as_secs_f64(),
                        node.name
                    );
                    last.insert(node.name.clone(), where_.clone());
                }
                if !done {
                    pending.push((node.name.clone(), where_));
                }
            }
            if pending.is_empty() {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                let lines: Vec<String> = pending
                    .iter()
                    .map(|(n, w)| {
                        format!(
                            "  {n}: {w}\n    console: {}",
                            vm::serial_tail(&self.vm(n), 5).replace('\n', "\n    console: ")
                        )
                    })
                    .collect();
                bail!(
                    "not every node finished its first boot within {timeout:?}:\n{}",
                    lines.join("\n")
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// Where a node stands: from its etcd report, else from its console.
fn progress(report: Option<&crate::agent::state::State>, paths: &VmPaths) -> (bool, String) {
    if let Some(s) = report {
        if s.done {
            return (true, "done".into());
        }
        let step = s.current_step();
        let mut line = format!("{} {}", s.current, step.status.as_str());
        if !step.error.is_empty() {
            line.push_str(&format!(": {}", step.error));
        }
        return (false, line);
    }
    match vm::last_agent_line(paths) {
        Some(l) => (false, format!("{l} (console)")),
        None => (false, "booting".into()),
    }
}

/// The lab's image key of a node: its plan, the agent binary and the extra trees. An
/// image whose key matches is not built again.
fn image_key(
    node_digest: &str,
    agent_sha: &str,
    extras: &[(PathBuf, String)],
    epoch: u64,
) -> String {
    let mut h = Sha256::new();
    h.update(node_digest.as_bytes());
    h.update(agent_sha.as_bytes());
    for (p, sha) in extras {
        h.update(p.to_string_lossy().as_bytes());
        h.update(sha.as_bytes());
    }
    h.update(epoch.to_be_bytes());
    hex::encode(h.finalize())
}

/// A MinIO member needs a server binary in its image; Debian has none. Say so before
/// anything is built.
fn check_minio_binary(fleet: &Fleet, extras: &[PathBuf]) -> anyhow::Result<()> {
    for node in &fleet.nodes {
        let Some(m) = node.minio.as_ref() else {
            continue;
        };
        let bin = m.params.minio_server_bin.trim_start_matches('/');
        if !extras.iter().any(|d| d.join(bin).is_file()) {
            bail!(
                "{} runs MinIO, whose server ({}) Debian does not package: pass --extra-tree DIR \
                 with DIR/{bin} (MinIO, RustFS or another MinIO-compatible server)",
                node.nodename,
                m.params.minio_server_bin
            );
        }
    }
    Ok(())
}

/// `lab up`: build what is missing, create the network, boot every node that is not
/// running, and wait until every agent reports done. Returns the lab and the time from
/// the first qemu start to the last node done.
pub fn up(fleet: &Fleet, opts: &UpOptions) -> anyhow::Result<(Lab, Duration)> {
    need_root()?;
    for tool in ["qemu-system-x86_64", "qemu-img", "ip"] {
        crate::sys::require(tool)?;
    }
    check_minio_binary(fleet, &opts.extra_trees)?;
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
        nodes: fleet
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| lab_node(i, n))
            .collect(),
    };
    let mut lab = Lab { dir, state };
    build_missing(fleet, &lab, opts)?;
    // Probed with a node's own kernel, once the images exist.
    lab.state.kvm = match opts.accel {
        Accel::Tcg => false,
        Accel::Kvm => true,
        Accel::Auto => lab
            .state
            .nodes
            .first()
            .is_some_and(|n| vm::kvm_works(&lab.image_dir(&n.name).join("vmlinuz"))),
    };
    let text = serde_json::to_vec_pretty(&lab.state)?;
    let tmp = lab.dir.join(".lab.json.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, state_path(&lab.dir))
        .with_context(|| format!("writing {}", state_path(&lab.dir).display()))?;
    let taps: Vec<String> = lab.state.nodes.iter().map(|n| n.tap.clone()).collect();
    net::create(&lab.state.netns, host, prefix, &taps)?;
    eprintln!(
        "lab: network namespace {} with bridge {}/{prefix}; {} VMs under {}",
        lab.state.netns,
        host,
        lab.state.nodes.len(),
        if lab.state.kvm { "KVM" } else { "TCG" }
    );
    let started = Instant::now();
    for node in &lab.state.nodes {
        if vm::read_pid(&lab.vm(&node.name))?.is_some() {
            eprintln!("lab: {} is running", node.name);
            continue;
        }
        let pid = lab.start(&node.name)?;
        eprintln!(
            "lab: {} ({}) booting, qemu pid {pid}, console {}",
            node.name,
            node.ip,
            lab.vm(&node.name).serial().display()
        );
    }
    // The wait runs inside the namespace: all of its traffic stays there.
    net::within(&lab.state.netns, || lab.wait_done(opts.timeout))?;
    Ok((lab, started.elapsed()))
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
    }
}

/// Build the raw image of every node whose image is missing or stale.
fn build_missing(fleet: &Fleet, lab: &Lab, opts: &UpOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the pigsty executable")?;
    let (agent_sha, _) = crate::image::hash_file(&exe)?;
    let epoch = crate::image::default_epoch();
    let extras = opts
        .extra_trees
        .iter()
        .map(|d| crate::image::extra::ExtraTree::read(d, epoch).map(|x| (d.clone(), x.sha256)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let catalog = Catalog::debian12();
    let images = lab.dir.join("images");
    let mut missing: Vec<((&Node, crate::compile::Compiled), String)> = Vec::new();
    for node in &fleet.nodes {
        let compiled = crate::compile::compile(fleet, node, catalog)?;
        let key = image_key(&compiled.plan.digest, &agent_sha, &extras, epoch);
        let have = std::fs::read_to_string(images.join(format!("{}.key", node.nodename)))
            .unwrap_or_default();
        let complete = ["disk.raw", "vmlinuz", "initrd.img", "cmdline"]
            .iter()
            .all(|f| images.join(&node.nodename).join(f).is_file());
        if have.trim() == key && complete {
            continue;
        }
        let paths = lab.vm(&node.nodename);
        if paths.disk().exists() {
            bail!(
                "{}'s image changed (inventory, pigsty or extra trees) while the lab holds its \
                 disk: `pigsty lab down --purge` first (or `pigsty lab reimage {}` after `up`)",
                node.nodename,
                node.nodename
            );
        }
        missing.push(((node, compiled), key));
    }
    if missing.is_empty() {
        eprintln!("lab: every image is up to date");
        return Ok(());
    }
    let names: Vec<&str> = missing
        .iter()
        .map(|((n, _), _)| n.nodename.as_str())
        .collect();
    eprintln!("lab: building images of {}", names.join(", "));
    let build = crate::image::BuildOptions {
        formats: vec![crate::image::Format::Raw],
        out: images.clone(),
        cache: opts.cache.clone(),
        offline: false,
        epoch,
        extra_trees: opts.extra_trees.clone(),
    };
    let (nodes, keys): (Vec<_>, Vec<_>) = missing.into_iter().unzip();
    crate::image::build(fleet, &nodes, &build)?;
    for ((node, _), key) in nodes.iter().zip(&keys) {
        std::fs::write(images.join(format!("{}.key", node.nodename)), key)?;
    }
    Ok(())
}

/// One row of `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub node: String,
    pub ip: String,
    /// `running (pid N)` or `off`.
    pub vm: String,
    /// The agent's join state, as reported to etcd.
    pub join: String,
    /// Patroni's view: leader, replica, sync_standby; empty when it does not answer.
    pub role: String,
    pub state: String,
    pub lag: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct PatroniCluster {
    members: Vec<PatroniMember>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct PatroniMember {
    name: String,
    role: String,
    state: String,
    lag: Option<serde_json::Value>,
}

/// `lab status`: VM, join state and Patroni role of every node. The calling thread
/// must be in the lab's namespace.
pub fn status(lab: &Lab) -> anyhow::Result<Vec<StatusRow>> {
    let endpoints = lab.etcd_endpoints();
    let reported = crate::agent::read_fleet(&endpoints, Duration::from_secs(3)).unwrap_or_default();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(2))
        .no_proxy()
        .build()?;
    let mut cluster: BTreeMap<String, PatroniMember> = BTreeMap::new();
    for node in &lab.state.nodes {
        let Some(port) = node.patroni else { continue };
        let url = format!("http://{}:{port}/cluster", node.ip);
        if let Ok((200, body)) = crate::agent::patroni::get(&http, &url)
            && let Ok(c) = serde_json::from_str::<PatroniCluster>(&body)
        {
            for m in c.members {
                cluster.entry(m.name.clone()).or_insert(m);
            }
            break;
        }
    }
    let mut rows = Vec::new();
    for node in &lab.state.nodes {
        let vm = match vm::read_pid(&lab.vm(&node.name))? {
            Some(pid) => format!("running (pid {pid})"),
            None => "off".into(),
        };
        let join = match reported.get(&node.name) {
            Some(s) => progress(Some(s), &lab.vm(&node.name)).1,
            None => "unreported".into(),
        };
        let member = node.instance.as_ref().and_then(|i| cluster.get(i));
        rows.push(StatusRow {
            node: node.name.clone(),
            ip: node.ip.clone(),
            vm,
            join,
            role: member.map(|m| m.role.clone()).unwrap_or_default(),
            state: member.map(|m| m.state.clone()).unwrap_or_default(),
            lag: member.and_then(|m| m.lag.as_ref().and_then(serde_json::Value::as_u64)),
        });
    }
    Ok(rows)
}

/// `lab down`: stop every VM of the lab and remove its namespace; with `purge`, the
/// disks and console logs too (images stay: they are a cache).
pub fn down(dir: &Path, purge: bool) -> anyhow::Result<Vec<String>> {
    need_root()?;
    let lab = Lab::open(dir)?;
    let mut stopped = Vec::new();
    for node in &lab.state.nodes {
        if vm::kill(&lab.vm(&node.name))? {
            stopped.push(node.name.clone());
        }
    }
    net::delete(&lab.state.netns)?;
    if purge {
        let vms = lab.dir.join("vms");
        if vms.exists() {
            std::fs::remove_dir_all(&vms).with_context(|| format!("removing {}", vms.display()))?;
        }
    }
    Ok(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_change_with_every_input() {
        let base = image_key("plan", "agent", &[], 1);
        assert_ne!(base, image_key("plan2", "agent", &[], 1));
        assert_ne!(base, image_key("plan", "agent2", &[], 1));
        assert_ne!(base, image_key("plan", "agent", &[], 2));
        assert_ne!(
            base,
            image_key("plan", "agent", &[(PathBuf::from("/x"), "s".into())], 1)
        );
    }

    #[test]
    fn a_minio_member_without_a_server_binary_is_refused_before_building() {
        let fleet = crate::inventory::load(&crate::inventory::Source::BuiltInLab)
            .unwrap()
            .fleet;
        let err = check_minio_binary(&fleet, &[]).unwrap_err().to_string();
        assert!(err.contains("--extra-tree"), "{err}");
        assert!(err.contains("usr/local/bin/minio"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/local/bin")).unwrap();
        std::fs::write(dir.path().join("usr/local/bin/minio"), b"x").unwrap();
        check_minio_binary(&fleet, &[dir.path().to_path_buf()]).unwrap();
    }

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
