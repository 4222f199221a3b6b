//! `pigsty serve`: what the boot server hands out for an inventory, from what
//! `build-image` wrote into `--out` (docs/pxe.md).
//!
//! A node the inventory gives a `node_mac` boots over the network to install its
//! disk: the kernel and initrd of its PXE set, its root squashfs booted live
//! (`boot=live fetch=`) into `pigsty-install.target`, whose installer writes the
//! node's `disk.raw` onto its disk and reports. Once reported, the node's script
//! sends it back to the firmware, which boots the disk. Nodes without a build, or
//! with a build of another inventory, are refused by name, here and on their
//! console.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::{Artifacts, Machine, Scripts, boot};
use crate::compile::Compiled;
use crate::model::{Fleet, Node};

/// What `build-image` must have written for a node to be installed over the network.
pub const NEEDED: &[&str] = &[
    "pxe/vmlinuz",
    "pxe/initrd.img",
    "pxe/root.squashfs",
    "disk.raw",
    crate::blockmap::FILE,
];

/// Artifacts anyone on the network may fetch: a Debian kernel and its initrd, which
/// iPXE fetches with whatever address the network's DHCP gave it.
const OPEN: &[&str] = &["pxe/vmlinuz", "pxe/initrd.img"];

/// One node as the boot server sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub node: String,
    pub ip: String,
    /// `${mac:hexhyp}`; empty without `node_mac`.
    pub mac: String,
    /// `install`, `installed`, `kept`, `not built`, `stale`, `no node_mac`.
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What a serve run hands out.
pub struct Prepared {
    pub artifacts: Artifacts,
    /// Filled with URLs once the server's port is known: see [`scripts`].
    pub entries: Vec<Entry>,
    nodes: BTreeMap<String, NodeArtifacts>,
}

/// The sha256 of each artifact of a node's build, by name.
#[derive(Debug, Clone, Default)]
struct NodeArtifacts {
    by_name: BTreeMap<String, String>,
}

/// The manifest fields read here.
#[derive(Debug, serde::Deserialize)]
struct Manifest {
    plan_digest: String,
    artifacts: Vec<ManifestArtifact>,
    #[serde(default)]
    root: Option<ManifestRoot>,
}

#[derive(Debug, serde::Deserialize)]
struct ManifestArtifact {
    name: String,
    sha256: String,
}

#[derive(Debug, serde::Deserialize)]
struct ManifestRoot {
    path: String,
    sha256: String,
}

/// Read each node's build under `out`: its artifacts served (by sha256; what holds
/// the node's secrets to its own address only), and its state.
pub fn prepare(
    fleet: &Fleet,
    compiled: &[Compiled],
    out: &Path,
    installed: &BTreeMap<String, super::Installed>,
) -> anyhow::Result<Prepared> {
    let mut artifacts = Artifacts::default();
    let mut entries = Vec::new();
    let mut nodes = BTreeMap::new();
    for (node, c) in fleet.nodes.iter().zip(compiled) {
        let mut entry = Entry {
            node: node.nodename.clone(),
            ip: node.ip.to_string(),
            mac: String::new(),
            state: String::new(),
            detail: String::new(),
        };
        let Some(mac) = node.node.node_mac.as_deref() else {
            entry.state = "no node_mac".into();
            entry.detail = "give it node_mac in the inventory to boot it over the network".into();
            entries.push(entry);
            continue;
        };
        entry.mac = boot::hexhyp(mac)
            .with_context(|| format!("{}: node_mac {mac:?} is not a MAC", node.nodename))?;
        let dir = out.join(&node.nodename);
        let manifest_path = dir.join("manifest.json");
        let manifest: Option<Manifest> = match std::fs::read(&manifest_path) {
            Ok(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", manifest_path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", manifest_path.display()));
            }
        };
        let build = format!(
            "pigsty build-image --role {} --format pxe,raw --out {}",
            node.nodename,
            out.display()
        );
        let Some(manifest) = manifest else {
            entry.state = "not built".into();
            entry.detail = format!("no build in {}: {build}", dir.display());
            entries.push(entry);
            continue;
        };
        if manifest.plan_digest != c.plan.digest {
            entry.state = "stale".into();
            entry.detail = format!(
                "{} was built from another inventory or tool (plan {}, the inventory's {}): {build}",
                dir.display(),
                short(&manifest.plan_digest),
                short(&c.plan.digest)
            );
            entries.push(entry);
            continue;
        }
        let by_name: BTreeMap<String, String> = manifest
            .artifacts
            .iter()
            .map(|a| (a.name.clone(), a.sha256.clone()))
            .collect();
        let missing: Vec<&str> = NEEDED
            .iter()
            .copied()
            .filter(|n| !by_name.contains_key(*n) || !dir.join(n).is_file())
            .collect();
        // Everything of the build is served: what holds the node's files (its
        // bundle, disks, root squashfs) to the node's own address and MAC only, and
        // only until its install is reported (its install window).
        for a in &manifest.artifacts {
            let path = dir.join(&a.name);
            if a.name == "manifest.json" || !path.is_file() {
                continue;
            }
            if OPEN.contains(&a.name.as_str()) {
                artifacts.add(&a.sha256, &path, None);
            } else {
                artifacts.add_for_machine(&a.sha256, &path, IpAddr::V4(node.ip), &entry.mac);
            }
        }
        if let Some(root) = &manifest.root {
            let path = out.join(&root.path);
            if path.is_file() {
                artifacts.add(&root.sha256, &path, None);
            }
        }
        if !missing.is_empty() {
            entry.state = "not built".into();
            entry.detail = format!(
                "its build lacks {} (formats pxe and raw): {build}",
                missing.join(", ")
            );
            entries.push(entry);
            continue;
        }
        entry.state = match installed.get(&entry.mac) {
            Some(done) => done.result.clone(),
            None => "install".into(),
        };
        nodes.insert(node.nodename.clone(), NodeArtifacts { by_name });
        entries.push(entry);
    }
    Ok(Prepared {
        artifacts,
        entries,
        nodes,
    })
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The scripts, with the server's URLs: `base` is how a node reaches the server
/// (`http://IP:PORT`), by node. `reinstall`: nodes whose installer may write over a
/// disk holding data.
pub fn scripts(
    fleet: &Fleet,
    prepared: &Prepared,
    base: &dyn Fn(&Node) -> anyhow::Result<String>,
    reinstall: &[String],
) -> anyhow::Result<Scripts> {
    let mut scripts = Scripts::default();
    for e in &prepared.entries {
        if e.mac.is_empty() {
            continue;
        }
        let node = fleet
            .nodes
            .iter()
            .find(|n| n.nodename == e.node)
            .with_context(|| format!("{} is not in the inventory", e.node))?;
        let install = match prepared.nodes.get(&e.node) {
            Some(a) => {
                let base = base(node)?;
                install_script(node, a, &e.mac, &base, reinstall.contains(&e.node))
            }
            None => refused(&e.node, &e.state, &e.detail),
        };
        scripts.add(
            &e.mac,
            Machine {
                node: e.node.clone(),
                ip: IpAddr::V4(node.ip),
                install,
                installed: boot::from_disk(&e.node),
            },
        )?;
    }
    Ok(scripts)
}

fn install_script(
    node: &Node,
    a: &NodeArtifacts,
    mac: &str,
    base: &str,
    reinstall: bool,
) -> String {
    let sha = |n: &str| a.by_name.get(n).cloned().unwrap_or_default();
    let disk = sha("disk.raw");
    let map = sha(crate::blockmap::FILE);
    // live-boot fetches the root over the address DHCP gives eth0 in the initramfs
    // (`ethdevice=`); the node's own network configuration, in that root, takes over
    // once it runs. The root holds the node's files and is served to the node's
    // address only: the network's DHCP must give the machine its inventory address.
    let mut cmdline = format!(
        "boot=live fetch={base}/sha256/{squash}/root.squashfs ethdevice=eth0 net.ifnames=0 \
         console=tty0 console=ttyS0,115200 systemd.unit=pigsty-install.target \
         pigsty.install={base}/sha256/{disk} pigsty.install.sha256={disk} \
         pigsty.install.map={base}/sha256/{map} pigsty.install.map.sha256={map} \
         pigsty.install.report={base}/installed/{mac}",
        squash = sha("pxe/root.squashfs"),
    );
    // The disk the inventory names (checked as a device path when it was loaded);
    // without one, the installer takes the first non-removable disk.
    if let Some(disk) = &node.node.node_disk {
        cmdline.push_str(&format!(" pigsty.disk={disk}"));
    }
    if reinstall {
        cmdline.push_str(" pigsty.reinstall");
    }
    boot::node(&boot::NodeBoot {
        nodename: node.nodename.clone(),
        ip: node.ip,
        kernel_sha256: sha("pxe/vmlinuz"),
        initrd_sha256: sha("pxe/initrd.img"),
        cmdline,
    })
}

/// A node that cannot be installed: its console says why; it asks again later.
fn refused(node: &str, state: &str, detail: &str) -> String {
    format!(
        "#!ipxe
# pigsty serve: {node} cannot be installed ({state})
echo pigsty serve: {node} cannot be installed: {state}
echo {detail}
echo asking again in 60 s
sleep 60
chain --autofree ../boot.ipxe
"
    )
}

/// Where `pigsty serve` keeps what it learns (the install state) and writes
/// dnsmasq's files: `<out>/_serve/`.
pub fn state_dir(out: &Path) -> PathBuf {
    out.join("_serve")
}
