//! The PXE set: kernel, initrd (with Debian's live-boot), the root as squashfs, an
//! iPXE script for the node, one chained by MAC when the inventory gives `node_mac`,
//! and a dnsmasq snippet. Artifacts are served from the infra node's nginx
//! (`http://{admin_ip}/pigsty/<nodename>/pxe/`).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::tree::Tree;
use crate::model::Node;
use crate::sys;

/// Where the PXE artifacts of `node` are served from.
pub fn base_url(node: &Node) -> String {
    format!("http://{}/pigsty/{}/pxe", node.node.admin_ip, node.nodename)
}

/// A MAC as iPXE's `${mac:hexhyp}` spells it (`52-54-00-12-34-56`).
pub fn mac_hexhyp(mac: &str) -> Option<String> {
    let parts: Vec<&str> = mac.split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then(|| parts.join("-").to_ascii_lowercase())
}

fn netmask(prefix: u8) -> String {
    std::net::Ipv4Addr::from(crate::model::prefix_mask(prefix)).to_string()
}

/// The node's iPXE script: live-boot fetches the squashfs; the static address comes
/// from the kernel's `ip=` so the initrd can reach the server.
pub fn ipxe_script(node: &Node, cmdline_extra: &str) -> String {
    let n = &node.node;
    let url = base_url(node);
    let gw = n.node_gateway.map(|g| g.to_string()).unwrap_or_default();
    format!(
        "#!ipxe\n# pigsty: {name} ({ip})\nkernel {url}/vmlinuz initrd=initrd.img boot=live fetch={url}/root.squashfs ip={ip}::{gw}:{mask}:{name}:eth0:off {cmdline_extra}\ninitrd {url}/initrd.img\nboot\n",
        name = node.nodename,
        ip = node.ip,
        mask = netmask(n.node_ip_prefix),
    )
}

/// dnsmasq: a fixed lease for the node's MAC and iPXE chained by MAC.
pub fn dnsmasq_snippet(node: &Node) -> String {
    let mut out = format!(
        "# pigsty: PXE for {} ({})\ndhcp-match=set:ipxe,175\n",
        node.nodename, node.ip
    );
    out.push_str("dhcp-boot=tag:!ipxe,ipxe.efi\n");
    let server = format!("http://{}/pigsty", node.node.admin_ip);
    match node.node.node_mac.as_deref().and_then(mac_hexhyp) {
        Some(mac) => {
            out.push_str(&format!("dhcp-host={},{},{},infinite\n", mac.replace('-', ":"), node.ip, node.nodename));
            out.push_str(&format!("dhcp-boot=tag:ipxe,{server}/by-mac/${{mac:hexhyp}}.ipxe\n"));
        }
        None => out.push_str(&format!(
            "# node_mac is not set in the inventory: boot {} by its script directly\ndhcp-boot=tag:ipxe,{}/boot.ipxe\n",
            node.nodename,
            base_url(node)
        )),
    }
    out
}

/// Write the PXE set under `dir/pxe/` (and `dir/by-mac/<mac>.ipxe` when known).
pub fn write(
    dir: &Path,
    node: &Node,
    tree: &Tree,
    boot: &super::disk::BootFiles,
    epoch: u64,
) -> anyhow::Result<()> {
    let pxe = dir.join("pxe");
    std::fs::create_dir_all(&pxe)?;
    std::fs::write(pxe.join("vmlinuz"), &boot.kernel)?;
    std::fs::write(pxe.join("initrd.img"), &boot.initrd)?;
    let extra = "console=tty0 console=ttyS0,115200 net.ifnames=0 systemd.show_status=1";
    std::fs::write(pxe.join("boot.ipxe"), ipxe_script(node, extra))?;
    std::fs::write(pxe.join("dnsmasq.conf"), dnsmasq_snippet(node))?;
    if let Some(mac) = node.node.node_mac.as_deref().and_then(mac_hexhyp) {
        let by_mac = dir.join("by-mac");
        std::fs::create_dir_all(&by_mac)?;
        std::fs::write(
            by_mac.join(format!("{mac}.ipxe")),
            format!("#!ipxe\nchain {}/boot.ipxe\n", base_url(node)),
        )?;
    }
    let work = tempfile::Builder::new()
        .prefix(".pigsty-pxe")
        .tempdir_in(dir.parent().unwrap_or(dir))?;
    let root = work.path().join("root");
    tree.extract(&root, epoch)?;
    let epoch = epoch.to_string();
    sys::run(
        Command::new("mksquashfs")
            .arg(&root)
            .arg(pxe.join("root.squashfs"))
            .args(["-noappend", "-quiet", "-no-progress", "-comp", "zstd"])
            .args(["-mkfs-time", &epoch, "-all-time", &epoch]),
    )
    .context("making root.squashfs")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_masks() {
        assert_eq!(
            mac_hexhyp("52:54:00:AB:cd:01").as_deref(),
            Some("52-54-00-ab-cd-01")
        );
        assert_eq!(mac_hexhyp("52:54:00:ab:cd"), None);
        assert_eq!(netmask(24), "255.255.255.0");
        assert_eq!(netmask(32), "255.255.255.255");
    }
}
