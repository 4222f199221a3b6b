//! `pigsty lab pxe NODE`: a node given an empty disk and booted from the network, as
//! bare metal is with `pigsty serve` (issue 15; docs/pxe.md). The lab serves the
//! node's build (formats raw and pxe) from inside its network with dnsmasq giving
//! the node its address (the lab network has no DHCP server of its own), boots the
//! VM with the NIC first and its empty disk second, and waits until the installer
//! reports its disk written and the node asks again (and is sent to its disk).
//! From then on the node boots from its disk and joins as any other.
//!
//! With `--stranger`, a second machine boots from the network beside it: an empty
//! disk and a MAC no node has. dnsmasq gives it an address of a small pool, and it
//! must be given the "unknown machine" script, show it, and fetch nothing else.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{Lab, net, vm};
use crate::model::Fleet;

/// What `lab pxe` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    pub node: String,
    /// From power-on to the installer's report.
    pub installed_secs: f64,
    /// From power-on to the node asking again and being sent to its disk.
    pub to_disk_secs: f64,
    pub disk_bytes: u64,
    /// What of the disk was sent: its data, by its block map.
    pub data_bytes: u64,
    /// The machine the inventory does not know, when one was booted beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stranger: Option<Stranger>,
}

/// What the machine of no node was given.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stranger {
    pub mac: String,
    /// The address dnsmasq gave it (of the pool).
    pub ip: String,
    /// From its power-on to its asking for its script.
    pub asked_secs: f64,
    /// Every request it made, `METHOD PATH STATUS`.
    pub requests: Vec<String>,
}

/// The VM name (under `vms/`) of the machine of no node.
pub const STRANGER: &str = "stranger";

/// The tap of the machine of no node (the lab's nodes have tap0, tap1, ...).
const STRANGER_TAP: &str = "tapstranger";

/// What the unknown-machine script shows on its console (serve::boot::unknown).
const UNKNOWN_SHOWN: &str = "this machine is not in the inventory";

/// A bound on the stranger's firmware, iPXE and DHCP: far below a node's install.
const STRANGER_LIMIT: Duration = Duration::from_secs(600);

/// The machine of no node while it runs; powered off when dropped.
struct StrangerVm {
    paths: vm::VmPaths,
    mac: String,
    started: Instant,
    asked: Option<(Duration, std::net::IpAddr)>,
    done: Option<Stranger>,
}

impl Drop for StrangerVm {
    fn drop(&mut self) {
        let _ = vm::kill(&self.paths);
    }
}

impl StrangerVm {
    /// Look again: asked for its script? shown it? Then power it off and check that
    /// it asked for nothing else.
    fn poll(&mut self, server: &crate::serve::Server) -> anyhow::Result<()> {
        if self.done.is_some() {
            return Ok(());
        }
        let path = format!("/ipxe/{}", self.mac);
        let log = server.log();
        if self.asked.is_none()
            && let Some(l) = log.iter().find(|l| l.path == path && l.status == 200)
        {
            self.asked = Some((self.started.elapsed(), l.peer));
        }
        if let Some((asked, peer)) = self.asked {
            let console = std::fs::read(self.paths.serial()).unwrap_or_default();
            if String::from_utf8_lossy(&console).contains(UNKNOWN_SHOWN) {
                vm::kill(&self.paths)?;
                let requests: Vec<String> = server
                    .log()
                    .iter()
                    .filter(|l| l.peer == peer)
                    .map(|l| format!("{} {} {}", l.method, l.path, l.status))
                    .collect();
                if let Some(other) = requests.iter().find(|r| {
                    !(r.starts_with("GET /boot.ipxe ") || r.starts_with(&format!("GET {path} ")))
                }) {
                    bail!(
                        "the machine of no node ({}, {peer}) was answered more than its                          unknown-machine script: {other}",
                        self.mac
                    );
                }
                self.done = Some(Stranger {
                    mac: self.mac.replace('-', ":"),
                    ip: peer.to_string(),
                    asked_secs: asked.as_secs_f64(),
                    requests,
                });
                return Ok(());
            }
        }
        if self.started.elapsed() > STRANGER_LIMIT {
            bail!(
                "the machine of no node ({}) {} within {:.0} s; its console ends: {}",
                self.mac,
                if self.asked.is_some() {
                    "asked for its script but did not show it"
                } else {
                    "never asked for its script"
                },
                STRANGER_LIMIT.as_secs_f64(),
                vm::serial_tail(&self.paths, 20)
            );
        }
        if vm::read_pid(&self.paths)?.is_none() {
            bail!("the machine of no node ({}) stopped", self.mac);
        }
        Ok(())
    }
}

/// `count` addresses in a row on the subnet of `host` that neither `host` nor a
/// node uses, from the top of the subnet down: the pool of machines of no node.
fn free_pool(
    host: Ipv4Addr,
    prefix: u8,
    nodes: &[Ipv4Addr],
    count: u32,
) -> anyhow::Result<crate::serve::boot::DhcpPool> {
    let mask = crate::model::prefix_mask(prefix);
    let net = u32::from(host) & mask;
    let top = net | (!mask).saturating_sub(1);
    let taken = |ip: u32| ip == u32::from(host) || nodes.iter().any(|n| u32::from(*n) == ip);
    let mut last = top;
    while last >= net + count {
        let first = last + 1 - count;
        match (first..=last).rev().find(|ip| taken(*ip)) {
            None => {
                return Ok(crate::serve::boot::DhcpPool {
                    first: Ipv4Addr::from(first),
                    last: Ipv4Addr::from(last),
                });
            }
            Some(t) => last = t - 1,
        }
    }
    bail!(
        "no {count} free addresses in a row on {}/{prefix}",
        Ipv4Addr::from(net)
    )
}

impl Lab {
    /// Reinstall `name` over the network onto an empty disk; see the module docs.
    /// `fleet` is the lab's (as `lab update` takes it).
    pub fn pxe(
        &self,
        fleet: &Fleet,
        name: &str,
        limit: Duration,
        stranger: bool,
    ) -> anyhow::Result<Installed> {
        let lab_node = self.node(name)?.clone();
        let index = fleet
            .nodes
            .iter()
            .position(|n| n.nodename == lab_node.name)
            .with_context(|| format!("{name} is not in the inventory"))?;
        let compiled = fleet
            .nodes
            .iter()
            .map(|n| crate::compile::compile(fleet, n).map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        // 1. The node's build with its PXE set, outside the lab's network (a layer
        //    not cached yet may need the archive).
        let out = self.dir.join("pxe");
        let mut build = self.bundle_build();
        build.formats = vec![crate::image::Format::Raw, crate::image::Format::Pxe];
        build.out = out.clone();
        let node = &fleet.nodes[index];
        let manifest = crate::image::build(fleet, &[(node, compiled[index].clone())], &build)?
            .pop()
            .context("the build made no manifest")?;
        let disk_bytes = manifest
            .artifacts
            .iter()
            .find(|a| a.name == "disk.raw")
            .map_or(0, |a| a.size);
        // What the installer fetches: the disk's pieces of data, by its block map.
        let map_path = out.join(&node.nodename).join(crate::blockmap::FILE);
        let data_bytes = std::fs::read(&map_path)
            .ok()
            .and_then(|b| crate::blockmap::BlockMap::parse(&b).ok())
            .map_or(disk_bytes, |m| m.data_bytes());
        // 2. What the boot server hands out: the node known by the lab's MAC for it.
        let mut known = fleet.clone();
        known.nodes[index].node.node_mac = Some(lab_node.mac.clone());
        let prepared = crate::serve::fleet::prepare(&known, &compiled, &out, &Default::default())?;
        let entry = prepared
            .entries
            .iter()
            .find(|e| e.node == lab_node.name)
            .context("the boot server lists no entry for the node")?;
        if entry.state != "install" {
            bail!(
                "{name} cannot be installed: {}: {}",
                entry.state,
                entry.detail
            );
        }
        let mac = entry.mac.clone();
        let host: Ipv4Addr = self.state.host_ip.parse().context("host_ip in lab.json")?;
        let ip: Ipv4Addr = lab_node.ip.parse().context("a node's ip in lab.json")?;
        // 3. An empty disk, the old machine's logs aside, its report forgotten.
        let paths = self.vm(&lab_node.name);
        vm::kill(&paths)?;
        // A machine that never had a disk left no report to forget (and on a lab
        // still booting, no etcd would take the delete).
        let had_disk = paths.disk().exists();
        vm::empty_disk(&paths, disk_bytes)?;
        std::fs::write(paths.image_key(), self.image_key(&lab_node.name)?)
            .with_context(|| format!("writing {}", paths.image_key().display()))?;
        if had_disk {
            self.forget_report(&lab_node.name);
        }
        let mut taps = vec![lab_node.tap.clone()];
        // The machine of no node: a MAC no node of the fleet or the lab has, an empty
        // disk, an address of a pool of its own.
        let stranger_mac = (1u8..=250)
            .map(|i| format!("52:54:00:5e:5e:{i:02x}"))
            .find(|m| {
                let taken =
                    |x: &str| crate::serve::boot::hexhyp(x) == crate::serve::boot::hexhyp(m);
                !self.state.nodes.iter().any(|n| taken(&n.mac))
                    && !fleet
                        .nodes
                        .iter()
                        .any(|n| n.node.node_mac.as_deref().is_some_and(taken))
            })
            .context("no free MAC for the machine of no node")?;
        let stranger_paths = self.vm(STRANGER);
        let pool = if stranger {
            vm::kill(&stranger_paths)?;
            vm::empty_disk(&stranger_paths, 0)?;
            taps.push(STRANGER_TAP.to_string());
            let nodes: Vec<Ipv4Addr> = self
                .state
                .nodes
                .iter()
                .filter_map(|n| n.ip.parse().ok())
                .collect();
            Some(free_pool(host, self.state.prefix, &nodes, 2)?)
        } else {
            None
        };
        net::create(&self.state.netns, host, self.state.prefix, &taps)?;
        // 4. Serve from inside the lab's network, boot, wait.
        let state_dir = crate::serve::fleet::state_dir(&out);
        std::fs::create_dir_all(&state_dir)?;
        let _ = std::fs::remove_file(state_dir.join("installed.json"));
        let installed = net::within(&self.state.netns, || {
            let server = crate::serve::Server::start_with(
                "0.0.0.0:0".parse()?,
                prepared.artifacts.clone(),
                Some(crate::serve::Scripts::default()),
            )?;
            let port = server.addr().port();
            let base = |_: &crate::model::Node| Ok(format!("http://{host}:{port}"));
            let scripts = crate::serve::fleet::scripts(&known, &prepared, &base, &[])?;
            server.set_scripts(scripts);
            let _dnsmasq = crate::serve::dhcp::Dnsmasq::start(
                net::BRIDGE,
                port,
                &state_dir,
                &crate::serve::boot::Leases {
                    hosts: vec![crate::serve::boot::DhcpHost {
                        mac: mac.replace('-', ":"),
                        ip,
                        name: lab_node.name.clone(),
                    }],
                    pool,
                },
            )?;
            let start = Instant::now();
            let pid = vm::start(&vm::Boot {
                name: &lab_node.name,
                paths: &paths,
                netns: &self.state.netns,
                tap: &lab_node.tap,
                mac: &lab_node.mac,
                memory_mib: self.state.memory_mib,
                cpus: self.state.cpus,
                kvm: self.state.kvm,
                network_first: true,
            })?;
            eprintln!(
                "lab pxe: {name} (qemu pid {pid}) boots from the network onto an empty disk; \
                 serving on {host}:{port}"
            );
            let mut stranger = match pool {
                None => None,
                Some(pool) => {
                    let started = Instant::now();
                    let pid = vm::start(&vm::Boot {
                        name: STRANGER,
                        paths: &stranger_paths,
                        netns: &self.state.netns,
                        tap: STRANGER_TAP,
                        mac: &stranger_mac,
                        memory_mib: 256,
                        cpus: 1,
                        kvm: self.state.kvm,
                        network_first: true,
                    })?;
                    eprintln!(
                        "lab pxe: a machine of no node ({stranger_mac}, qemu pid {pid}) boots \
                         from the network beside it; its address from {}-{}",
                        pool.first, pool.last
                    );
                    Some(StrangerVm {
                        paths: stranger_paths.clone(),
                        mac: crate::serve::boot::hexhyp(&stranger_mac).unwrap_or_default(),
                        started,
                        asked: None,
                        done: None,
                    })
                }
            };
            let disk_sha = manifest
                .artifacts
                .iter()
                .find(|a| a.name == "disk.raw")
                .map(|a| a.sha256.clone())
                .unwrap_or_default();
            let mut said = Instant::now();
            let installed_at = loop {
                if let Some(s) = stranger.as_mut() {
                    s.poll(&server)?;
                }
                if server.installed().contains_key(&mac) {
                    break start.elapsed();
                }
                if start.elapsed() > limit {
                    bail!(
                        "{name}: no install reported within {:.0} s; its console: {}",
                        limit.as_secs_f64(),
                        paths.serial().display()
                    );
                }
                if vm::read_pid(&paths)?.is_none() {
                    bail!("{name}'s VM stopped before its install was reported");
                }
                if said.elapsed() > Duration::from_secs(30) {
                    let (sent, size) = server.served(&disk_sha);
                    eprintln!(
                        "lab pxe: {name}: {:.0} s, {} of the {} MiB of data of its {} MiB disk sent",
                        start.elapsed().as_secs_f64(),
                        sent >> 20,
                        data_bytes >> 20,
                        size >> 20
                    );
                    said = Instant::now();
                }
                std::thread::sleep(Duration::from_secs(1));
            };
            eprintln!(
                "lab pxe: {name}: disk installed after {:.0} s; waiting for it to boot from it",
                installed_at.as_secs_f64()
            );
            // It reboots and asks again: the script sends it to its disk.
            let path = format!("/ipxe/{mac}");
            let asked_before = server.log().iter().filter(|l| l.path == path).count();
            let to_disk = loop {
                if server.log().iter().filter(|l| l.path == path).count() > asked_before {
                    break start.elapsed();
                }
                if start.elapsed() > limit {
                    bail!("{name}: installed, but did not network-boot again within the bound");
                }
                std::thread::sleep(Duration::from_secs(1));
            };
            // The boot from its disk starts now: the lab's waits time it (and judge
            // its silence) from here.
            let now = crate::agent::state::now();
            std::fs::write(paths.booted_at(), format!("{now}\n"))
                .with_context(|| format!("writing {}", paths.booted_at().display()))?;
            // The stranger has long been told, as a rule; if not, it gets its own bound.
            let stranger = match stranger.as_mut() {
                None => None,
                Some(s) => loop {
                    s.poll(&server)?;
                    if let Some(done) = s.done.clone() {
                        break Some(done);
                    }
                    std::thread::sleep(Duration::from_secs(1));
                },
            };
            // A moment for iPXE to fetch the whole script before the server goes.
            std::thread::sleep(Duration::from_secs(2));
            Ok(Installed {
                node: name.to_string(),
                installed_secs: installed_at.as_secs_f64(),
                to_disk_secs: to_disk.as_secs_f64(),
                disk_bytes,
                data_bytes,
                stranger,
            })
        });
        // Served: the node's build (its whole disk and its PXE root, GiBs) goes.
        let _ = std::fs::remove_dir_all(out.join(name));
        installed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strangers_pool_avoids_the_host_and_the_nodes() {
        let host = Ipv4Addr::new(10, 10, 10, 1);
        let nodes = [
            Ipv4Addr::new(10, 10, 10, 11),
            Ipv4Addr::new(10, 10, 10, 253),
        ];
        let p = free_pool(host, 24, &nodes, 2).unwrap();
        assert_eq!(
            (p.first, p.last),
            (
                Ipv4Addr::new(10, 10, 10, 251),
                Ipv4Addr::new(10, 10, 10, 252)
            )
        );
        // A /30 has two usable addresses: both taken, no pool.
        let host = Ipv4Addr::new(192, 0, 2, 1);
        assert!(free_pool(host, 30, &[Ipv4Addr::new(192, 0, 2, 2)], 2).is_err());
        let p = free_pool(host, 29, &[], 2).unwrap();
        assert_eq!(
            (p.first, p.last),
            (Ipv4Addr::new(192, 0, 2, 5), Ipv4Addr::new(192, 0, 2, 6))
        );
    }
}
