//! The lab's private network: a network namespace holding a bridge on the inventory's
//! subnet and one tap per VM. Nothing of it is visible from the host's own network,
//! so the lab's traffic cannot leave it.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

use anyhow::{Context, bail};

use crate::sys;

pub const BRIDGE: &str = "br0";

/// `ip -n NS ...`, failing with ip's own message.
fn ip(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    sys::run(Command::new("ip").arg("-n").arg(ns).args(args))?;
    Ok(())
}

pub fn exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// Create the namespace with its bridge (holding `host` on the subnet) and the taps.
/// An existing namespace of this name is reused; missing taps are added.
pub fn create(ns: &str, host: Ipv4Addr, prefix: u8, taps: &[String]) -> anyhow::Result<()> {
    if !exists(ns) {
        sys::run(Command::new("ip").args(["netns", "add", ns]))?;
    }
    let links = sys::run_stdout(Command::new("ip").args(["-n", ns, "-o", "link", "show"]))?;
    let has = |name: &str| {
        links
            .lines()
            .any(|l| l.split(':').nth(1).map(str::trim) == Some(name))
    };
    ip(ns, &["link", "set", "lo", "up"])?;
    if !has(BRIDGE) {
        ip(ns, &["link", "add", BRIDGE, "type", "bridge"])?;
        ip(
            ns,
            &["addr", "add", &format!("{host}/{prefix}"), "dev", BRIDGE],
        )?;
    }
    ip(ns, &["link", "set", BRIDGE, "up"])?;
    for tap in taps {
        if !has(tap) {
            ip(ns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
        }
        ip(ns, &["link", "set", tap, "master", BRIDGE])?;
        ip(ns, &["link", "set", tap, "up"])?;
    }
    Ok(())
}

/// Remove the namespace (and with it the bridge and taps).
pub fn delete(ns: &str) -> anyhow::Result<()> {
    if exists(ns) {
        sys::run(Command::new("ip").args(["netns", "del", ns]))?;
    }
    Ok(())
}

/// Move the calling thread into the namespace: every socket it opens afterwards, and
/// every thread or process it starts, lives there. Call it before building HTTP
/// clients (their worker threads inherit the namespace).
pub fn enter(ns: &str) -> anyhow::Result<()> {
    let path = std::path::Path::new("/run/netns").join(ns);
    let file = std::fs::File::open(&path).with_context(|| {
        format!(
            "opening {} (is the lab up? `pigsty lab up`)",
            path.display()
        )
    })?;
    // Changes only this thread's namespace.
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("entering network namespace {ns}"))
}

/// Run `f` on a thread of its own inside the namespace, so its traffic stays there
/// and the calling thread stays where it is.
pub fn within<T: Send>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(move || {
            enter(ns)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread inside namespace {ns} panicked"))?
    })
}

/// A free host address on the nodes' subnet for the bridge: the first of .1, .254,
/// .2, .253, ... that no node uses.
pub fn host_address(nodes: &[Ipv4Addr], prefix: u8) -> anyhow::Result<Ipv4Addr> {
    let first = *nodes.first().context("the inventory has no nodes")?;
    let mask = crate::model::prefix_mask(prefix);
    let net = u32::from(first) & mask;
    for ip in nodes {
        if u32::from(*ip) & mask != net {
            bail!(
                "the lab puts every node on one subnet: {ip} is not in {}/{prefix} (of {first})",
                Ipv4Addr::from(net)
            );
        }
    }
    let size = (!mask).saturating_add(1);
    if size < 4 {
        bail!("subnet /{prefix} is too small for the lab's bridge address");
    }
    let (low, high) = (1u32, size - 2);
    let mut candidates = Vec::new();
    for i in 0..(size / 2) {
        candidates.push(low + i);
        candidates.push(high - i);
    }
    candidates
        .into_iter()
        .map(|host| Ipv4Addr::from(net | host))
        .find(|c| !nodes.contains(c))
        .context("no free address left on the nodes' subnet for the lab's bridge")
}

/// A stable locally administered MAC for a node without `node_mac`: 52:54:00 (qemu's
/// prefix) and the address's last three octets.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", o[1], o[2], o[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_address_is_free_and_on_the_subnet() {
        let nodes: Vec<Ipv4Addr> = ["10.10.10.11", "10.10.10.12"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            host_address(&nodes, 24).unwrap(),
            "10.10.10.1".parse::<Ipv4Addr>().unwrap()
        );
        let taken: Vec<Ipv4Addr> = vec!["10.10.10.1".parse().unwrap()];
        assert_eq!(
            host_address(&taken, 24).unwrap(),
            "10.10.10.254".parse::<Ipv4Addr>().unwrap()
        );
        let split: Vec<Ipv4Addr> =
            vec!["10.10.10.1".parse().unwrap(), "10.10.11.1".parse().unwrap()];
        let err = host_address(&split, 24).unwrap_err().to_string();
        assert!(err.contains("10.10.11.1"), "{err}");
        let tiny: Vec<Ipv4Addr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        assert!(host_address(&tiny, 30).is_err());
    }

    #[test]
    fn macs_are_stable_and_local() {
        assert_eq!(mac_for("10.10.10.11".parse().unwrap()), "52:54:00:0a:0a:0b");
    }
}
