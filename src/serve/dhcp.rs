//! `pigsty serve --dhcp`: Debian's dnsmasq as proxy DHCP and TFTP on one interface
//! (beside the network's own DHCP server), started by the server and stopped by it:
//! exactly the process it started, never another dnsmasq of the machine.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::boot;

/// Debian's dnsmasq (package dnsmasq-base).
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq; stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct Dnsmasq {
    child: Option<Child>,
    pub conf: PathBuf,
    pub address: Ipv4Addr,
}

/// The first IPv4 address of `interface` and its prefix length (`ip -j addr`).
pub fn interface_address(interface: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let out = Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", interface])
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "--interface {interface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading `ip -j addr`")?;
    list.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .find_map(|a| {
            let ip: Ipv4Addr = a["local"].as_str()?.parse().ok()?;
            let prefix = u8::try_from(a["prefixlen"].as_u64()?).ok()?;
            Some((ip, prefix))
        })
        .with_context(|| format!("--interface {interface} has no IPv4 address"))
}

impl Dnsmasq {
    /// Start dnsmasq on `interface` with its files under `dir`: the configuration,
    /// and the TFTP root holding Debian's iPXE binaries. `port` is the HTTP
    /// server's, which iPXE clients are sent to (`/boot.ipxe`).
    /// With hosts in `leases`, dnsmasq gives them their addresses itself (a network
    /// with no DHCP server of its own), and machines it does not know an address of
    /// the pool when there is one; else proxy DHCP.
    pub fn start(
        interface: &str,
        port: u16,
        dir: &Path,
        leases: &boot::Leases,
    ) -> anyhow::Result<Dnsmasq> {
        if !Path::new(DNSMASQ).is_file() {
            bail!("--dhcp needs {DNSMASQ}: apt-get install dnsmasq-base");
        }
        let (address, prefix) = interface_address(interface)?;
        if let Some(p) = leases.pool {
            let mut taken: Vec<Ipv4Addr> = leases.hosts.iter().map(|h| h.ip).collect();
            taken.push(address);
            p.check(address, prefix, &taken)
                .map_err(|e| anyhow::anyhow!("--dhcp-pool: {e}"))?;
        }
        let tftp = dir.join("tftp");
        std::fs::create_dir_all(&tftp).with_context(|| format!("creating {}", tftp.display()))?;
        // dnsmasq adds `.0` to a BIOS PXE service's name (see boot::dnsmasq_conf).
        for (from, to) in [
            (boot::IPXE_BIOS, "undionly.0"),
            (boot::IPXE_EFI, "ipxe.efi"),
        ] {
            std::fs::copy(from, tftp.join(to))
                .with_context(|| format!("{from} (apt-get install ipxe)"))?;
        }
        let conf = dir.join("dnsmasq.conf");
        let text = boot::dnsmasq_conf(
            interface,
            address,
            prefix,
            &format!("http://{address}:{port}/boot.ipxe"),
            &tftp,
            &dir.join("dnsmasq.pid"),
            leases,
        );
        std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        let mut child = Command::new(DNSMASQ)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .arg("--log-facility=-")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {DNSMASQ}"))?;
        // A bad configuration or a port taken ends it at once: say so now.
        std::thread::sleep(Duration::from_millis(300));
        if let Some(status) = child.try_wait()? {
            bail!(
                "dnsmasq exited at once ({status}); its configuration: {}",
                conf.display()
            );
        }
        tracing::info!(
            "dnsmasq (pid {}): proxy DHCP and TFTP on {interface} ({address}/{prefix})",
            child.id()
        );
        Ok(Dnsmasq {
            child: Some(child),
            conf,
            address,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Stop a dnsmasq that a server which was killed left behind under `dir` (its pid
/// file there, and its command line naming the configuration there: exactly the
/// one that server started). Returns its pid when there was one.
pub fn stop_left(dir: &Path) -> anyhow::Result<Option<u32>> {
    let Ok(text) = std::fs::read_to_string(dir.join("dnsmasq.pid")) else {
        return Ok(None);
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(None);
    };
    let conf = format!("--conf-file={}", dir.join("dnsmasq.conf").display());
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !cmdline.split(|b| *b == 0).any(|arg| arg == conf.as_bytes()) {
        return Ok(None);
    }
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return Ok(None);
    };
    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        if start.elapsed() > Duration::from_secs(5) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(pid))
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
