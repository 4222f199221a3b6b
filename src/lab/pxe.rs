//! `pigsty lab pxe NODE`: a node given an empty disk and booted from the network, as
//! bare metal is with `pigsty serve` (issue 15; docs/pxe.md). The lab serves the
//! node's build (formats raw and pxe) from inside its network with dnsmasq giving
//! the node its address (the lab network has no DHCP server of its own), boots the
//! VM with the NIC first and its empty disk second, and waits until the installer
//! reports its disk written and the node asks again (and is sent to its disk).
//! From then on the node boots from its disk and joins as any other.

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
}

impl Lab {
    /// Reinstall `name` over the network onto an empty disk; see the module docs.
    /// `fleet` is the lab's (as `lab update` takes it).
    pub fn pxe(&self, fleet: &Fleet, name: &str, limit: Duration) -> anyhow::Result<Installed> {
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
        vm::empty_disk(&paths, disk_bytes)?;
        std::fs::write(paths.image_key(), self.image_key(&lab_node.name)?)
            .with_context(|| format!("writing {}", paths.image_key().display()))?;
        self.forget_report(&lab_node.name);
        net::create(
            &self.state.netns,
            host,
            self.state.prefix,
            std::slice::from_ref(&lab_node.tap),
        )?;
        // 4. Serve from inside the lab's network, boot, wait.
        let state_dir = crate::serve::fleet::state_dir(&out);
        std::fs::create_dir_all(&state_dir)?;
        let _ = std::fs::remove_file(state_dir.join("installed.json"));
        net::within(&self.state.netns, || {
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
                &[crate::serve::boot::DhcpHost {
                    mac: mac.replace('-', ":"),
                    ip,
                    name: lab_node.name.clone(),
                }],
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
            let disk_sha = manifest
                .artifacts
                .iter()
                .find(|a| a.name == "disk.raw")
                .map(|a| a.sha256.clone())
                .unwrap_or_default();
            let mut said = Instant::now();
            let installed_at = loop {
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
                        "lab pxe: {name}: {:.0} s, disk {} of {} MiB sent",
                        start.elapsed().as_secs_f64(),
                        sent >> 20,
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
            // A moment for iPXE to fetch the whole script before the server goes.
            std::thread::sleep(Duration::from_secs(2));
            Ok(Installed {
                node: name.to_string(),
                installed_secs: installed_at.as_secs_f64(),
                to_disk_secs: to_disk.as_secs_f64(),
                disk_bytes,
            })
        })
    }
}
