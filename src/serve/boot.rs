//! What `pigsty serve` tells a machine that network-boots (issue 15), after Matchbox:
//! every iPXE client starts at `/boot.ipxe`, which chains to `/ipxe/${mac:hexhyp}`;
//! a MAC the inventory gives a node (`node_mac`) gets that node's script, any other
//! the "unknown machine" script, which shows the MAC and waits. And dnsmasq's
//! configuration for `--dhcp`: proxy DHCP (beside the network's own DHCP server,
//! as Pixiecore does) and TFTP of Debian's iPXE binaries to clients that are not
//! iPXE yet.

use std::net::Ipv4Addr;
use std::path::Path;

/// Where every iPXE client starts: its own script by MAC, relative to this one's URL.
pub const GENERIC: &str = "#!ipxe
# pigsty serve: every machine starts here and asks for its own script by MAC
chain --autofree ipxe/${mac:hexhyp} || goto failed
exit
:failed
echo pigsty serve: no script for ${mac} (is the server up?); retrying in 30 s
sleep 30
chain --autofree boot.ipxe
";

/// A MAC as iPXE's `${mac:hexhyp}` spells it, from the inventory's `node_mac` or a
/// request path (the image's PXE set spells it the same way).
pub use crate::image::pxe::mac_hexhyp as hexhyp;

/// What a machine the inventory does not know gets: its MAC shown, as the inventory
/// would write it, and nothing else; it asks again after a minute.
pub fn unknown(mac_hexhyp: &str) -> String {
    let colons = mac_hexhyp.replace('-', ":");
    format!(
        "#!ipxe
# pigsty serve: {mac_hexhyp} is not in the inventory
echo
echo pigsty serve: this machine is not in the inventory.
echo   MAC ${{mac}} (node_mac: \"{colons}\")
echo   address ${{ip}}
echo Give a host of the inventory this node_mac and build its image; asking again in 60 s.
sleep 60
chain --autofree ../boot.ipxe
"
    )
}

/// A node's boot: the kernel and initrd of its image and the kernel command line
/// they start with, by their sha256 on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBoot {
    pub nodename: String,
    pub ip: Ipv4Addr,
    pub kernel_sha256: String,
    pub initrd_sha256: String,
    pub cmdline: String,
}

/// The node's script: its kernel and initrd, fetched by sha256 from the server
/// (relative to the script's URL), started with its command line.
pub fn node(n: &NodeBoot) -> String {
    format!(
        "#!ipxe
# pigsty serve: {name} ({ip})
echo pigsty serve: {name} ({ip})
kernel --name vmlinuz ../sha256/{kernel} initrd=initrd.img {cmdline}
initrd --name initrd.img ../sha256/{initrd}
boot
",
        name = n.nodename,
        ip = n.ip,
        kernel = n.kernel_sha256,
        initrd = n.initrd_sha256,
        cmdline = n.cmdline,
    )
}

/// What a node whose disk is installed gets: back to the firmware, which boots the
/// next device (its disk).
pub fn from_disk(nodename: &str) -> String {
    format!(
        "#!ipxe
# pigsty serve: {nodename} boots from its disk
echo pigsty serve: {nodename} is installed; booting from disk
exit
"
    )
}

/// Debian's `ipxe` package: the binaries dnsmasq hands a PXE client that is not iPXE.
pub const IPXE_BIOS: &str = "/usr/lib/ipxe/undionly.kpxe";
pub const IPXE_EFI: &str = "/usr/lib/ipxe/ipxe.efi";

/// A machine dnsmasq gives its address itself (`serve --dhcp --dhcp-addresses`, on a
/// network with no DHCP server of its own): its MAC, address and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub name: String,
}

/// dnsmasq for `--dhcp` on `interface` for the subnet `net/prefix`: TFTP from
/// `tftp_root` (holding [`IPXE_BIOS`] as `undionly.0` and [`IPXE_EFI`]) for PXE
/// clients that are not iPXE yet, and `boot_url` (this server's `/boot.ipxe`) for
/// iPXE clients, BIOS and UEFI (told apart by the user class iPXE sends). No DNS.
///
/// With no `leases.hosts`, proxy DHCP: the network's own DHCP server keeps giving
/// the addresses. With hosts, dnsmasq gives each of them its address and the boot
/// file in its own answer; another machine gets an address only from the pool (so
/// it can be told it is unknown), and none without one.
pub fn dnsmasq_conf(
    interface: &str,
    net: Ipv4Addr,
    prefix: u8,
    boot_url: &str,
    tftp_root: &Path,
    pid_file: &Path,
    leases: &Leases,
) -> String {
    let hosts = &leases.hosts;
    let mask = crate::model::prefix_mask(prefix);
    let net = Ipv4Addr::from(u32::from(net) & mask);
    let bios = file_name(IPXE_BIOS);
    let efi = file_name(IPXE_EFI);
    let mut out = format!(
        "# pigsty serve --dhcp: {what} and TFTP for network boots (written by pigsty)
port=0
interface={interface}
bind-interfaces
except-interface=lo
pid-file={pid}
dhcp-userclass=set:ipxe,iPXE
enable-tftp
tftp-root={tftp}
log-dhcp
",
        what = if hosts.is_empty() {
            "proxy DHCP"
        } else {
            "DHCP for the inventory's machines"
        },
        pid = pid_file.display(),
        tftp = tftp_root.display(),
    );
    if hosts.is_empty() {
        out.push_str(&format!(
            "dhcp-range={net},proxy,{mask}
pxe-prompt=\"pigsty\",0
pxe-service=tag:!ipxe,x86PC,\"pigsty: iPXE (BIOS)\",{bios_stem}
pxe-service=tag:!ipxe,X86-64_EFI,\"pigsty: iPXE (UEFI)\",{efi}
pxe-service=tag:ipxe,x86PC,\"pigsty\",{boot_url}
pxe-service=tag:ipxe,X86-64_EFI,\"pigsty\",{boot_url}
",
            mask = Ipv4Addr::from(mask),
            // dnsmasq appends `.0` to a BIOS PXE service's file name: the TFTP root
            // holds the BIOS binary as `undionly.0`.
            bios_stem = bios.trim_end_matches(".kpxe"),
        ));
    } else {
        out.push_str(&format!(
            "dhcp-range={net},static,{mask}
dhcp-option=3
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:ipxe,{boot_url}
dhcp-boot=tag:!ipxe,tag:efi64,{efi}
dhcp-boot=tag:!ipxe,tag:!efi64,{bios_stem}.0
",
            mask = Ipv4Addr::from(mask),
            bios_stem = bios.trim_end_matches(".kpxe"),
        ));
        if let Some(p) = leases.pool {
            // Short leases: a machine the inventory does not know is only told so.
            out.push_str(&format!(
                "dhcp-range={},{},{},5m\n",
                p.first,
                p.last,
                Ipv4Addr::from(mask)
            ));
        }
        for h in hosts {
            out.push_str(&format!("dhcp-host={},{},{}\n", h.mac, h.ip, h.name));
        }
    }
    out
}

/// What dnsmasq gives out itself: nothing (proxy DHCP), or the inventory's
/// machines their addresses and, with a pool, other machines one of its addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leases {
    pub hosts: Vec<DhcpHost>,
    pub pool: Option<DhcpPool>,
}

/// The addresses `serve --dhcp --dhcp-addresses --dhcp-pool FIRST-LAST` gives
/// machines the inventory does not know, so they reach the "unknown machine" script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpPool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl std::str::FromStr for DhcpPool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected FIRST-LAST (192.0.2.200-192.0.2.209)"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<Ipv4Addr>()
                .map_err(|e| format!("{x:?}: {e}"))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if u32::from(first) > u32::from(last) {
            return Err(format!("{s:?}: {first} comes after {last}"));
        }
        Ok(DhcpPool { first, last })
    }
}

impl DhcpPool {
    /// Whether the pool lies on the subnet `net/prefix` and holds none of `taken`.
    pub fn check(&self, net: Ipv4Addr, prefix: u8, taken: &[Ipv4Addr]) -> Result<(), String> {
        let mask = crate::model::prefix_mask(prefix);
        let on = |ip: Ipv4Addr| u32::from(ip) & mask == u32::from(net) & mask;
        if !on(self.first) || !on(self.last) {
            return Err(format!(
                "the pool {}-{} is not on the interface's subnet {}/{prefix}",
                self.first,
                self.last,
                Ipv4Addr::from(u32::from(net) & mask)
            ));
        }
        let range = u32::from(self.first)..=u32::from(self.last);
        if let Some(ip) = taken.iter().find(|ip| range.contains(&u32::from(**ip))) {
            return Err(format!(
                "the pool {}-{} holds {ip}, which is taken (a node's or the server's)",
                self.first, self.last
            ));
        }
        Ok(())
    }
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_spelled_as_ipxe_does() {
        assert_eq!(
            hexhyp("52:54:00:AB:cd:01").as_deref(),
            Some("52-54-00-ab-cd-01")
        );
        assert_eq!(
            hexhyp("52-54-00-ab-cd-01").as_deref(),
            Some("52-54-00-ab-cd-01")
        );
        assert_eq!(hexhyp("52:54:00:ab:cd"), None);
        assert_eq!(hexhyp("52:54:00:ab:cd:zz"), None);
        assert_eq!(hexhyp("../../etc/passwd"), None);
    }

    #[test]
    fn scripts_are_ipxe_and_say_what_they_do() {
        assert!(GENERIC.starts_with("#!ipxe\n"));
        assert!(GENERIC.contains("chain --autofree ipxe/${mac:hexhyp}"));
        let u = unknown("52-54-00-ab-cd-01");
        assert!(u.starts_with("#!ipxe\n"));
        assert!(u.contains("node_mac: \"52:54:00:ab:cd:01\""), "{u}");
        assert!(u.contains("MAC ${mac}"));
        assert!(
            !u.contains("kernel"),
            "an unknown machine is given nothing to boot"
        );
        let n = node(&NodeBoot {
            nodename: "pg-test-1".into(),
            ip: "10.10.10.11".parse().unwrap(),
            kernel_sha256: "aa".into(),
            initrd_sha256: "bb".into(),
            cmdline: "console=ttyS0".into(),
        });
        assert!(n.contains("kernel --name vmlinuz ../sha256/aa initrd=initrd.img console=ttyS0"));
        assert!(n.contains("initrd --name initrd.img ../sha256/bb"));
        assert!(from_disk("pg-test-1").contains("\nexit\n"));
    }

    /// The configuration on the lab's bridge, serving from its host address.
    fn conf(leases: &Leases) -> String {
        dnsmasq_conf(
            "br0",
            "10.10.10.1".parse().unwrap(),
            24,
            "http://10.10.10.1:8080/boot.ipxe",
            Path::new("/run/pigsty/tftp"),
            Path::new("/run/pigsty/dnsmasq.pid"),
            leases,
        )
    }

    fn lab_host() -> DhcpHost {
        DhcpHost {
            mac: "52:54:00:0a:0a:0b".into(),
            ip: "10.10.10.11".parse().unwrap(),
            name: "pg-lab-1".into(),
        }
    }

    #[test]
    fn dnsmasq_is_proxy_dhcp_with_tftp_and_no_dns() {
        let c = conf(&Leases::default());
        assert!(c.contains("\nport=0\n"), "{c}");
        assert!(
            c.contains("dhcp-range=10.10.10.0,proxy,255.255.255.0"),
            "{c}"
        );
        assert!(c.contains("pxe-service=tag:!ipxe,x86PC,\"pigsty: iPXE (BIOS)\",undionly\n"));
        assert!(c.contains("pxe-service=tag:!ipxe,X86-64_EFI,\"pigsty: iPXE (UEFI)\",ipxe.efi\n"));
        assert!(c.contains(
            "pxe-service=tag:ipxe,X86-64_EFI,\"pigsty\",http://10.10.10.1:8080/boot.ipxe\n"
        ));
        assert!(c.contains("tftp-root=/run/pigsty/tftp\n"));
        assert!(!c.contains('{'), "no placeholder left: {c}");
        assert!(!c.contains("dhcp-host"), "{c}");
        // Giving addresses itself: static leases for the inventory's machines only.
        let c = conf(&Leases {
            hosts: vec![lab_host()],
            pool: None,
        });
        assert!(
            c.contains("dhcp-range=10.10.10.0,static,255.255.255.0\n"),
            "{c}"
        );
        assert!(
            c.contains("dhcp-host=52:54:00:0a:0a:0b,10.10.10.11,pg-lab-1\n"),
            "{c}"
        );
        assert!(
            c.contains("dhcp-boot=tag:ipxe,http://10.10.10.1:8080/boot.ipxe\n"),
            "{c}"
        );
        assert!(
            c.contains("dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi\n"),
            "{c}"
        );
        assert!(
            c.contains("dhcp-boot=tag:!ipxe,tag:!efi64,undionly.0\n"),
            "{c}"
        );
        assert!(!c.contains("proxy"), "{c}");
        assert_eq!(c.matches("dhcp-range=").count(), 1, "no pool: {c}");
        // With a pool, machines the inventory does not know get short leases from it.
        let pool: DhcpPool = "10.10.10.200-10.10.10.201".parse().unwrap();
        let c = conf(&Leases {
            hosts: vec![lab_host()],
            pool: Some(pool),
        });
        assert!(
            c.contains("dhcp-range=10.10.10.200,10.10.10.201,255.255.255.0,5m\n"),
            "{c}"
        );
    }

    #[test]
    fn pools_parse_and_are_checked_against_the_subnet() {
        let p: DhcpPool = "10.10.10.200-10.10.10.209".parse().unwrap();
        assert_eq!(p.first, Ipv4Addr::new(10, 10, 10, 200));
        assert!("10.10.10.9-10.10.10.2".parse::<DhcpPool>().is_err());
        assert!("10.10.10.9".parse::<DhcpPool>().is_err());
        assert!("10.10.10.x-10.10.10.9".parse::<DhcpPool>().is_err());
        let net = Ipv4Addr::new(10, 10, 10, 1);
        assert!(p.check(net, 24, &[Ipv4Addr::new(10, 10, 10, 11)]).is_ok());
        let e = p
            .check(net, 24, &[Ipv4Addr::new(10, 10, 10, 205)])
            .unwrap_err();
        assert!(e.contains("10.10.10.205"), "{e}");
        let e = p.check(Ipv4Addr::new(10, 10, 11, 1), 24, &[]).unwrap_err();
        assert!(e.contains("not on the interface's subnet"), "{e}");
    }
}
