//! Images, for real: build a node's artifacts with mmdebstrap and mke2fs, check they
//! are byte-identical across builds, and boot the raw disk under qemu (TCG), both
//! through the direct-kernel path and through UEFI (OVMF + systemd-boot). The VM's
//! only network is a tap inside a network namespace this test creates.
//!
//! These need root, network access to the Debian mirror (for the layer, once; it is
//! cached in target/pigsty-cache) and minutes of CPU, so they are `#[ignore]`d in
//! plain `cargo test`; ci/test.sh runs them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODE: &str = "img-etcd-1";

/// The tests of this file run one at a time: two TCG guests and a build sharing two
/// cores starve each other (seen: a UEFI guest 600 s in and not past basic.target).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const NODE_IP: &str = "10.99.0.11";
const HOST_IP: &str = "10.99.0.1/24";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    std::env::var_os("PIGSTY_CACHE")
        .map_or_else(|| root().join("target/pigsty-cache"), PathBuf::from)
}

fn build(out: &Path, formats: &str) -> serde_json::Value {
    let inv = root().join("tests/fixtures/image-node.yml");
    let status = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args([
            "-i",
            inv.to_str().unwrap(),
            "build-image",
            "--role",
            NODE,
            "--format",
            formats,
            "--out",
        ])
        .arg(out)
        .env("PIGSTY_CACHE", cache())
        .status()
        .expect("running pigsty build-image");
    assert!(status.success(), "build-image failed");
    let manifest = std::fs::read(out.join(NODE).join("manifest.json")).expect("manifest.json");
    serde_json::from_slice(&manifest).unwrap()
}

fn artifacts(m: &serde_json::Value) -> Vec<(String, String)> {
    m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root, mmdebstrap and the Debian mirror: run by ci/test.sh"]
fn builds_are_byte_identical() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let a = build(&dir.path().join("a"), "rootfs,raw,qcow2");
    let b = build(&dir.path().join("b"), "rootfs,raw,qcow2");
    let names: Vec<String> = artifacts(&a).into_iter().map(|(n, _)| n).collect();
    for want in [
        "rootfs.tar.zst",
        "disk.raw",
        "disk.qcow2",
        "vmlinuz",
        "initrd.img",
        "cmdline",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert_eq!(
        artifacts(&a),
        artifacts(&b),
        "two builds of the same inputs differ"
    );
    // Every artifact holds the node's passwords: readable by its owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        let node_dir = dir.path().join("a").join(NODE);
        for want in ["rootfs.tar.zst", "disk.raw", "disk.qcow2", "initrd.img"] {
            let mode = std::fs::metadata(node_dir.join(want))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{want} is {:o}", mode & 0o777);
        }
        let manifest = std::fs::metadata(node_dir.join("manifest.json")).unwrap();
        assert_eq!(
            manifest.permissions().mode() & 0o077,
            0o044,
            "manifest.json"
        );
    }
    // What must not be baked into an image.
    let listing = Command::new("tar")
        .args(["--zstd", "-tvf"])
        .arg(dir.path().join("a").join(NODE).join("rootfs.tar.zst"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(!listing.contains("ssh_host_"), "SSH host keys baked in");
    assert!(
        !listing.contains("var/lib/systemd/random-seed"),
        "random seed baked in"
    );
    assert!(
        !listing.contains("var/lib/postgresql/15/main"),
        "Debian's main cluster baked in"
    );
    assert!(listing.contains("usr/local/bin/pigsty"), "agent missing");
    let machine_id = listing
        .lines()
        .find(|l| l.ends_with(" etc/machine-id"))
        .expect("etc/machine-id");
    assert!(
        machine_id.contains(" 0 "),
        "machine-id must be empty: {machine_id}"
    );
}

/// A network namespace with a tap on the node's subnet, removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    /// `tag` tells apart the tests of one process (they run on threads, in parallel).
    fn new(tag: &str) -> Netns {
        let name = format!("pigsty-img-{}-{tag}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        ip(&[
            "netns", "exec", &name, "ip", "tuntap", "add", "tap0", "mode", "tap",
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "tap0", "up"]);
        ip(&[
            "netns", "exec", &name, "ip", "addr", "add", HOST_IP, "dev", "tap0",
        ]);
        Netns { name }
    }

    /// Read the SSH banner of the guest: proves its address and that sshd runs.
    fn ssh_banner(&self) -> Option<String> {
        let script = format!("exec 3<>/dev/tcp/{NODE_IP}/22; timeout 5 head -c 7 <&3");
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "timeout", "8", "bash", "-c", &script,
            ])
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

struct Vm {
    child: Child,
    console: PathBuf,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    fn start(ns: &Netns, dir: &Path, uefi: bool) -> Vm {
        let img = dir.join(NODE);
        let console = dir.join(if uefi {
            "console-uefi.log"
        } else {
            "console-direct.log"
        });
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, "qemu-system-x86_64"])
            .args([
                "-machine",
                "q35",
                "-accel",
                "tcg",
                "-m",
                "1536",
                "-smp",
                "2",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,snapshot=on",
                img.join("disk.raw").display()
            ))
            .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
            .args(["-device", "virtio-net-pci,netdev=n0"]);
        if uefi {
            let vars = dir.join("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars)
                .expect("OVMF vars (apt-get install ovmf)");
            cmd.arg("-drive")
                .arg("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    vars.display()
                ));
        } else {
            let cmdline = std::fs::read_to_string(img.join("cmdline")).unwrap();
            cmd.arg("-kernel")
                .arg(img.join("vmlinuz"))
                .arg("-initrd")
                .arg(img.join("initrd.img"));
            cmd.arg("-append").arg(cmdline.trim());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu");
        Vm { child, console }
    }

    fn console_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.console) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Wait (bounded) until the console shows every marker.
    fn wait_for(&mut self, markers: &[&str], limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let text = self.console_text();
            if markers.iter().all(|m| text.contains(m)) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "qemu exited ({status}); console tail:\n{}",
                    tail(&text)
                ));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        Err(format!(
            "timed out after {limit:?} waiting for {markers:?}; console tail:\n{}",
            tail(&self.console_text())
        ))
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn boot(uefi: bool) {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), "raw");
    let ns = Netns::new(if uefi { "uefi" } else { "direct" });
    let mut vm = Vm::start(&ns, dir.path(), uefi);
    let started = Instant::now();
    let markers = [
        // systemd's own status lines are no markers: it stops printing them once the
        // serial getty owns the console, so whether "Starting pigsty-firstboot" or
        // "Reached target multi-user" shows is a race. The agent's own lines come only
        // from pigsty-firstboot.service; multi-user.target is shown below by sshd
        // (wanted by it) answering.
        "pigsty agent: step",
        "img-etcd-1 login:",
    ];
    if let Err(e) = vm.wait_for(&markers, Duration::from_secs(600)) {
        panic!(
            "{}: {e}",
            if uefi {
                "UEFI boot"
            } else {
                "direct-kernel boot"
            }
        );
    }
    eprintln!(
        "{} boot reached the login prompt in {:?}",
        if uefi { "UEFI" } else { "direct-kernel" },
        started.elapsed()
    );
    // The agent joins this one-member etcd cluster (bootstraps it) and finishes.
    if let Err(e) = vm.wait_for(&["step done: done"], Duration::from_secs(300)) {
        panic!("the first-boot agent did not finish: {e}");
    }
    let text = vm.console_text();
    // The address from the inventory answers, with sshd behind it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut banner = String::new();
    while Instant::now() < deadline {
        banner = ns.ssh_banner().unwrap_or_default();
        if banner.starts_with("SSH-2.0") {
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    assert!(
        banner.starts_with("SSH-2.0"),
        "no SSH banner from {NODE_IP} (got {banner:?}); console:\n{}",
        tail(&text)
    );
}

#[test]
#[ignore = "needs root, mmdebstrap, qemu and minutes of TCG: run by ci/test.sh"]
fn raw_disk_boots_direct_kernel() {
    boot(false);
}

#[test]
#[ignore = "needs root, mmdebstrap, qemu, OVMF and minutes of TCG: run by ci/test.sh"]
fn raw_disk_boots_uefi() {
    boot(true);
}
