//! One lab VM: a qemu process booting a node's A/B disk through UEFI firmware (OVMF)
//! and the disk's systemd-boot, on a copy-on-write disk over the image, with its
//! serial console and journal in log files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::sys;

/// How qemu runs the guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when /dev/kvm answers a probe, TCG otherwise.
    Auto,
    Kvm,
    Tcg,
}

/// Whether KVM really works here: a guest must get as far as printing the kernel's
/// banner within a few seconds. On some machines /dev/kvm exists, qemu starts, and
/// the guest never runs an instruction; a probe without a guest cannot tell.
pub fn kvm_works(kernel: &Path) -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let serial = dir.path().join("serial.log");
    let Ok(mut child) = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-machine",
            "q35",
            "-m",
            "256",
            "-nodefaults",
        ])
        .args(["-display", "none", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut works = false;
    while Instant::now() < deadline {
        let text = std::fs::read(&serial).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains("Linux version") {
            works = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    works
}

/// Where one VM's files are.
#[derive(Debug, Clone)]
pub struct VmPaths {
    pub dir: PathBuf,
}

impl VmPaths {
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// The guest's journal, one JSON object per entry, streamed by the image's
    /// pigsty-journal-export.service over the virtio port org.pigsty.journal.
    pub fn journal(&self) -> PathBuf {
        self.dir.join("journal.json")
    }
    /// When qemu last started (Unix seconds), the start of the boot leg.
    pub fn booted_at(&self) -> PathBuf {
        self.dir.join("booted_at")
    }
    /// The logs a machine leaves behind (kept by `lab down --purge`).
    pub fn logs(&self) -> [PathBuf; 3] {
        [self.serial(), self.journal(), self.qemu_log()]
    }
    /// Which image the disk was made from (the lab's image key).
    pub fn image_key(&self) -> PathBuf {
        self.dir.join("image.key")
    }
    /// The UEFI variable store of a firmware-booted VM (its NVRAM: new with each
    /// fresh disk, like a new machine's), one per device layout: a machine booted
    /// from the network has its disk and NIC at other PCI slots, and boot options
    /// OVMF kept for one layout send the other to the UEFI shell (seen in the lab
    /// e2e: a node installed over the network, power-cut, then started from its disk).
    pub fn uefi_vars(&self, network_first: bool) -> PathBuf {
        self.dir.join(if network_first {
            "OVMF_VARS.netboot.fd"
        } else {
            "OVMF_VARS.fd"
        })
    }
}

/// Debian's OVMF (package `ovmf`): the firmware code, read-only, and the template of
/// the variable store each VM gets a copy of.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Firmware-booted VMs need Debian's OVMF.
pub fn require_ovmf() -> anyhow::Result<()> {
    for f in [OVMF_CODE, OVMF_VARS] {
        if !Path::new(f).is_file() {
            bail!(
                "the lab boots through UEFI: it needs the firmware at {f} (apt-get install ovmf)"
            );
        }
    }
    Ok(())
}

/// Everything qemu needs to boot one node.
pub struct Boot<'a> {
    pub name: &'a str,
    pub paths: &'a VmPaths,
    pub netns: &'a str,
    pub tap: &'a str,
    pub mac: &'a str,
    pub memory_mib: u32,
    pub cpus: u32,
    pub kvm: bool,
    /// Boot from the network first (the NIC's iPXE ROM), the disk second: a
    /// machine with an empty disk, installed over the network (`lab pxe`).
    pub network_first: bool,
}

/// How much larger than its image a lab node's A/B drive is.
const AB_DATA_ROOM: u64 = 4 << 30;

/// A fresh copy-on-write disk over the image's disk.qcow2 (what a reimage gives).
pub fn fresh_disk(image_dir: &Path, paths: &VmPaths, key: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    let image = image_dir.join("disk.qcow2");
    let disk = paths.disk();
    new_machine(paths)?;
    // The drive is larger than its image, as a real one is: the data partition grows
    // into the rest at first boot.
    let len = qcow2_size(&image)?;
    let mut create = Command::new("qemu-img");
    create
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&image)
        .arg(&disk)
        .arg((len + AB_DATA_ROOM).to_string());
    sys::run(&mut create)?;
    std::fs::write(paths.image_key(), key)
        .with_context(|| format!("writing {}", paths.image_key().display()))?;
    Ok(())
}

/// The virtual size of a qcow2 image: its header's big-endian `size` at byte 24,
/// after the magic `QFI\xfb` (qemu's docs/interop/qcow2.txt).
fn qcow2_size(path: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut header = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        header[..4] == *b"QFI\xfb",
        "{} is not a qcow2 image",
        path.display()
    );
    let size: [u8; 8] = header[24..32].try_into().unwrap_or_default();
    Ok(u64::from_be_bytes(size))
}

/// A new machine: no disk, fresh UEFI variables, the old one's logs moved aside
/// (one generation).
fn new_machine(paths: &VmPaths) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(paths.disk());
    for vars in [paths.uefi_vars(false), paths.uefi_vars(true)] {
        let _ = std::fs::remove_file(vars);
    }
    for log in paths.logs() {
        if log.exists() {
            let mut old = log.clone().into_os_string();
            old.push(".old");
            std::fs::rename(&log, &old)
                .with_context(|| format!("moving {} aside", log.display()))?;
        }
    }
    Ok(())
}

/// An empty disk (zeros, no backing file) with room for an image of `image_bytes`
/// and the data partition's growth: what `lab pxe` installs onto.
pub fn empty_disk(paths: &VmPaths, image_bytes: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("creating {}", paths.dir.display()))?;
    new_machine(paths)?;
    sys::run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(paths.disk())
            .arg((image_bytes + AB_DATA_ROOM).to_string()),
    )?;
    Ok(())
}

/// What the lab adds to an image's kernel command line.
///
/// `quiet`: the kernel's own messages at 115200 baud cost seconds of boot under
/// emulation; systemd's status and the agent's lines still show.
///
/// `tsc=reliable` under TCG: the emulated TSCs of a guest's vCPUs look unsynchronized
/// to the kernel's boot check, so it falls back to the HPET, which has no vDSO path:
/// every clock read of etcd's Go runtime, Patroni and PostgreSQL becomes a system call
/// and an emulated device access that takes qemu's global lock. Measured inside an
/// idle lab guest, etcd's and Patroni's CPU each fell from about 55 % to 31 % of a
/// vCPU with it. TCG derives every vCPU's TSC from the host's one clock, so they agree.
/// A lab-only choice: images keep the kernel's own judgement on real machines.
///
/// `mitigations=off` under TCG: an emulated CPU does not speculate, so the kernel's
/// Spectre defences (retpolines on every indirect call, the return stack refilled on
/// every context switch) buy nothing there and cost emulated instructions on each
/// system call and switch. Under KVM the guest runs on the host's real CPU: they stay.
fn lab_kernel_args(kvm: bool) -> &'static str {
    if kvm {
        "quiet"
    } else {
        "quiet tsc=reliable mitigations=off"
    }
}

/// The lab disks' cache mode. With `unsafe` a guest's flush still writes qemu's own
/// caches (qcow2's tables) out to the host's page cache and only skips the host's
/// fdatasync (QEMU's bdrv_co_flush), so a power cut (SIGKILL of qemu) keeps all the
/// guest flushed, as with `writeback`; only a crash of the host would not, which a
/// lab need not survive. A synchronous 8 KiB write in a guest (`dd oflag=dsync`; what
/// PostgreSQL's commits and checkpoints, etcd's WAL and ext4's journal do) took 25 ms
/// with `writeback`, 10 ms with `unsafe`.
const DISK_CACHE: &str = "unsafe";

/// The guest's CPU: qemu64 without SVM (whose flag makes the guest load kvm), with
/// the instructions the nodes' hashing, TLS and checksums pick when present: SHA-NI
/// (the agent's SHA-256 of a root it writes, OpenSSL), AES-NI and PCLMULQDQ (TLS
/// records), SSE4.2's crc32 (PostgreSQL's WAL checksums), BMI2/ADX (P-256 in Go's
/// TLS handshakes: etcd members open a new connection to each peer every 3 to 4 s).
/// QEMU's TCG runs each as one helper, where qemu64 left the guest their scalar
/// code: `sha256sum` of 256 MiB took 4.4 s in a lab guest against 11.2 s, and a
/// node's boot to `graphical.target` 55 s against 60 s.
pub const CPU: &str = "qemu64,-svm,+ssse3,+sse4.1,+sse4.2,+popcnt,+aes,+pclmulqdq,+sha-ni,\
                   +bmi1,+bmi2,+adx,+movbe";

/// Start qemu inside the namespace; it daemonizes and writes its pid file. Returns
/// the pid.
pub fn start(b: &Boot) -> anyhow::Result<u32> {
    let _ = std::fs::remove_file(b.paths.pidfile());
    let qemu_log = std::fs::File::create(b.paths.qemu_log())
        .with_context(|| format!("creating {}", b.paths.qemu_log().display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", b.netns, "qemu-system-x86_64"])
        .args(["-name", b.name, "-machine", "q35"])
        // Only the devices a node needs: no VGA, parallel port or CD-ROM (each costs a
        // module load at boot, slow under emulation).
        .args(["-nodefaults", "-vga", "none", "-cpu", CPU])
        .args(["-accel", if b.kvm { "kvm" } else { "tcg" }])
        .args(["-m", &b.memory_mib.to_string()])
        .args(["-smp", &b.cpus.to_string()])
        .args(["-display", "none", "-monitor", "none"]);
    let mut nic = format!("virtio-net-pci,netdev=n0,mac={}", b.mac);
    // The firmware finds systemd-boot on the disk's ESP (the removable-media path, as
    // the NVRAM starts empty), and systemd-boot (256 and later) appends the lab's
    // arguments from SMBIOS type 11 to the disk's own loader entry.
    let vars = b.paths.uefi_vars(b.network_first);
    if !vars.exists() {
        std::fs::copy(OVMF_VARS, &vars)
            .with_context(|| format!("copying {OVMF_VARS} to {}", vars.display()))?;
    }
    cmd.arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-smbios")
        .arg(format!(
            "type=11,value=io.systemd.boot.kernel-cmdline-extra={}",
            lab_kernel_args(b.kvm).replace(',', ",,")
        ));
    // No network boot: the firmware would try the NIC's iPXE ROM when the disk does
    // not boot, and loading it costs seconds under emulation. A machine installed
    // over the network boots its NIC (qemu's iPXE ROM) first, its disk second.
    let disk = if b.network_first {
        nic.push_str(",bootindex=0");
        format!(
            "file={},format=qcow2,if=none,id=disk0,cache={DISK_CACHE}",
            b.paths.disk().display()
        )
    } else {
        nic.push_str(",romfile=");
        format!(
            "file={},format=qcow2,if=virtio,cache={DISK_CACHE}",
            b.paths.disk().display()
        )
    };
    cmd.arg("-drive").arg(disk);
    if b.network_first {
        cmd.args(["-device", "virtio-blk-pci,drive=disk0,bootindex=1"]);
    }
    cmd.args([
        "-netdev",
        &format!("tap,id=n0,ifname={},script=no,downscript=no", b.tap),
    ])
    .args(["-device", &nic])
    .args(["-device", "virtio-rng-pci"])
    .arg("-chardev")
    .arg(format!(
        "file,id=console,path={},append=on",
        b.paths.serial().display()
    ))
    .args(["-serial", "chardev:console"])
    // The journal leaves the guest over virtio (cheap under emulation, unlike the
    // UART) and outlives the VM; see pigsty-journal-export.service in the image.
    .args(["-device", "virtio-serial-pci,id=vser"])
    .arg("-chardev")
    .arg(format!(
        "file,id=journal,path={},append=on",
        b.paths.journal().display()
    ))
    .args([
        "-device",
        "virtserialport,bus=vser.0,chardev=journal,name=org.pigsty.journal",
    ])
    .arg("-pidfile")
    .arg(b.paths.pidfile())
    .arg("-daemonize")
    .stdin(Stdio::null())
    .stdout(qemu_log.try_clone()?)
    .stderr(qemu_log);
    let status = cmd
        .status()
        .with_context(|| format!("starting qemu for {}", b.name))?;
    if !status.success() {
        let log = std::fs::read(b.paths.qemu_log()).unwrap_or_default();
        bail!(
            "qemu for {} did not start ({status}): {}",
            b.name,
            sys::tail(&log, 10)
        );
    }
    read_pid(b.paths)?.with_context(|| format!("qemu for {} wrote no pid file", b.name))
}

/// The pid of the VM's qemu while it runs (its pid file names a live qemu that uses
/// this VM's disk).
pub fn read_pid(paths: &VmPaths) -> anyhow::Result<Option<u32>> {
    let Ok(text) = std::fs::read_to_string(paths.pidfile()) else {
        return Ok(None);
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(None);
    };
    Ok(is_ours(pid, paths).then_some(pid))
}

/// A live process whose command line names this VM's disk.
fn is_ours(pid: u32, paths: &VmPaths) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let disk = paths.disk();
    let needle = disk.to_string_lossy();
    String::from_utf8_lossy(&cmdline).contains(needle.as_ref())
}

/// Power the VM off at once (SIGKILL: a power cut) and wait, bounded, for it to go.
pub fn kill(paths: &VmPaths) -> anyhow::Result<bool> {
    let Some(pid) = read_pid(paths)? else {
        return Ok(false);
    };
    // A pid we just checked is our qemu; one that is already gone is fine.
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            let _ = std::fs::remove_file(paths.pidfile());
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("qemu (pid {pid}) did not exit within 20 s of SIGKILL")
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

/// The agent's last progress line on the console (`step patroni: running: ...`).
pub fn last_agent_line(paths: &VmPaths) -> Option<String> {
    let text = std::fs::read(paths.serial()).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines().rev().find_map(|l| {
        l.split_once("pigsty agent: ")
            .map(|(_, r)| r.trim().to_string())
    })
}

/// The console's last lines, for error messages.
pub fn serial_tail(paths: &VmPaths, lines: usize) -> String {
    let text = std::fs::read(paths.serial()).unwrap_or_default();
    sys::tail(&text, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// qemu-img's own qcow2 of a size no raw file gives (2 GiB and a sector), and a
    /// file that is not a qcow2.
    #[test]
    fn a_qcow2_size_is_read_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.qcow2");
        let want = (2u64 << 30) + 512;
        sys::run(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&image)
                .arg(want.to_string()),
        )
        .unwrap();
        assert_eq!(qcow2_size(&image).unwrap(), want);
        let raw = dir.path().join("x.raw");
        std::fs::write(&raw, [0u8; 64]).unwrap();
        let err = qcow2_size(&raw).unwrap_err().to_string();
        assert!(err.contains("not a qcow2"), "{err}");
    }
}
