//! The cloud-init format needs no layer: its seed is checked here in plain
//! `cargo test` with the real `cloud-init schema`, and built twice for identical
//! bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build(out: &Path) -> serde_json::Value {
    let inv = root().join("inventory/sandbox.yml");
    let st = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args([
            "-i",
            inv.to_str().unwrap(),
            "build-image",
            "--allow-default-passwords",
            "--role",
            "pg-test-1",
            "--format",
            "cloud-init",
            "--out",
        ])
        .arg(out)
        .env("PIGSTY_PKI", out.parent().unwrap().join("pki"))
        .status()
        .unwrap();
    assert!(st.success());
    serde_json::from_slice(&std::fs::read(out.join("pg-test-1/manifest.json")).unwrap()).unwrap()
}

#[test]
fn cloud_init_seed_is_valid_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(&dir.path().join("a"));
    let b = build(&dir.path().join("b"));
    assert_eq!(a["artifacts"], b["artifacts"], "two builds differ");
    let seed = dir.path().join("a/pg-test-1/cloud-init");
    let meta = std::fs::read_to_string(seed.join("meta-data")).unwrap();
    assert!(meta.contains("local-hostname: pg-test-1"), "{meta}");
    let net: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(seed.join("network-config")).unwrap())
            .unwrap();
    assert_eq!(net["ethernets"]["eth0"]["addresses"][0], "10.10.10.11/24");
    let user = std::fs::read_to_string(seed.join("user-data")).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(user.strip_prefix("#cloud-config\n").unwrap()).unwrap();
    let packages: Vec<&str> = config["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        packages.contains(&"postgresql-17") && packages.contains(&"patroni"),
        "{packages:?}"
    );
    let paths: Vec<&str> = config["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for p in [
        "/etc/pigsty/node.json",
        "/etc/hostname",
        "/etc/pigsty/image.json",
    ] {
        assert!(paths.contains(&p), "{p} not written by user-data");
    }
    // The agent is no part of user-data: it is the file `pigsty` beside it, which
    // runcmd's first command installs from the seed volume.
    assert!(
        !paths.contains(&"/usr/local/bin/pigsty"),
        "the agent must not travel in user-data"
    );
    assert!(user.len() < 1 << 20, "user-data is {} bytes", user.len());
    let first = config["runcmd"][0].to_string();
    assert!(
        first.contains("/usr/local/bin/pigsty") && first.contains("CIDATA"),
        "{first}"
    );
    let agent = std::fs::read(seed.join("pigsty")).unwrap();
    assert!(
        agent.starts_with(b"\x7fELF"),
        "cloud-init/pigsty is not the agent"
    );
    // The CIDATA volume carries the same four files.
    let img = std::fs::File::open(dir.path().join("a/pg-test-1/cidata.img")).unwrap();
    let fs = fatfs::FileSystem::new(img, fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.volume_label(), "CIDATA");
    let names: Vec<String> = fs
        .root_dir()
        .iter()
        .map(|e| e.unwrap().file_name())
        .collect();
    for n in ["meta-data", "user-data", "network-config", "pigsty"] {
        assert!(
            names.iter().any(|x| x == n),
            "{n} missing from CIDATA: {names:?}"
        );
    }
    let mut on_volume = Vec::new();
    std::io::Read::read_to_end(
        &mut fs.root_dir().open_file("pigsty").unwrap(),
        &mut on_volume,
    )
    .unwrap();
    assert!(
        on_volume == agent,
        "CIDATA's pigsty differs from cloud-init/pigsty"
    );
    // cloud-init's own schema check.
    if Command::new("cloud-init")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("cloud-init is not installed (ci/setup.sh installs it)");
    }
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(seed.join("user-data"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("Valid cloud-config"),
        "{text}"
    );
}

// ---- the seed consumed by real cloud-init in a VM ----------------------------------

const NODE: &str = "img-etcd-1";
const HOST_IP: &str = "10.99.0.1/24";
/// Prefix of the lines the image's report unit prints on the serial console.
const REPORT: &str = "PIGSTY-TEST";

fn cache() -> PathBuf {
    std::env::var_os("PIGSTY_CACHE")
        .map_or_else(|| root().join("target/pigsty-cache"), PathBuf::from)
}

/// The seed of the image-test node (etcd only: a small package set).
fn fixture_seed(out: &Path) -> serde_json::Value {
    let inv = root().join("tests/fixtures/image-node.yml");
    let st = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["-i", inv.to_str().unwrap(), "build-image", "--role", NODE])
        .arg("--allow-default-passwords")
        .args(["--format", "cloud-init", "--out"])
        .arg(out)
        .env("PIGSTY_PKI", out.parent().unwrap().join("pki"))
        .status()
        .unwrap();
    assert!(st.success(), "build-image --format cloud-init failed");
    let user = std::fs::read_to_string(out.join(NODE).join("cloud-init/user-data")).unwrap();
    serde_json::from_str(user.strip_prefix("#cloud-config\n").unwrap()).unwrap()
}

/// What the test image runs once cloud-init is done: report on the console, then
/// power off so the disk can be read afterwards. Test-only; every wait is bounded.
const REPORT_SCRIPT: &str = r#"#!/bin/sh
# cloud-final writes boot-finished when every stage ran (`status --wait` returns at
# the first recorded error, before the later stages).
i=0
while [ ! -e /var/lib/cloud/instance/boot-finished ] && [ $i -lt 2400 ]; do sleep 5; i=$((i + 5)); done
cloud-init status --long 2>&1 | sed 's/^/PIGSTY-TEST cloud-init /'
i=0
while [ ! -e /var/lib/pigsty/firstboot.done ] && [ $i -lt 900 ]; do sleep 5; i=$((i + 5)); done
if [ -e /var/lib/pigsty/firstboot.done ]; then echo "PIGSTY-TEST agent done"; else echo "PIGSTY-TEST agent not done"; fi
echo "PIGSTY-TEST report end"
sync
systemctl poweroff
"#;

const REPORT_UNIT: &str = "[Unit]
Description=test only: report what cloud-init did, then power off
[Service]
Type=exec
ExecStart=/usr/local/sbin/pigsty-test-report
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
";

/// A Debian cloud-style image: cloud-init (NoCloud only) and the node's packages
/// already installed, their services disabled as the seed's `packages` step (with
/// services held) and runcmd leave them. Cached under $PIGSTY_CACHE/cloud-images by
/// its recipe.
struct CloudImage {
    root: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
}

fn cloud_image(packages: &[String], disabled: &[String]) -> CloudImage {
    use sha2::{Digest, Sha256};
    // The fixture node does not set node_base: it is built on the default base.
    let catalog = pigsty::catalog::Catalog::base(pigsty::catalog::DEFAULT_BASE).unwrap();
    let mut all: Vec<String> = [
        "cloud-init",
        // cloud-init's resizefs module runs resize2fs.
        "e2fsprogs",
        "ifupdown",
        "linux-image-amd64",
        "initramfs-tools",
        // cloud-init's locale module runs locale-gen.
        "locales",
        "openssh-server",
        "sudo",
        "systemd-sysv",
        "udev",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(packages.iter().cloned())
    .collect();
    all.sort();
    all.dedup();
    let hooks = vec![
        "mkdir -p \"$1/etc/cloud/cloud.cfg.d\" && printf 'datasource_list: [ NoCloud ]\\n' > \"$1/etc/cloud/cloud.cfg.d/99-pigsty-test.cfg\"".to_string(),
        "printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\\n' > \"$1/etc/fstab\"".to_string(),
        // The locale cloud-init sets (en_US.UTF-8) must be one locale-gen makes.
        "sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' \"$1/etc/locale.gen\"".to_string(),
        format!("mkdir -p \"$1/usr/local/sbin\" && cat > \"$1/usr/local/sbin/pigsty-test-report\" <<'EOS'\n{REPORT_SCRIPT}EOS\nchmod 0755 \"$1/usr/local/sbin/pigsty-test-report\""),
        format!("cat > \"$1/etc/systemd/system/pigsty-test-report.service\" <<'EOS'\n{REPORT_UNIT}EOS\nchroot \"$1\" systemctl enable pigsty-test-report.service"),
        if disabled.is_empty() {
            "true".to_string()
        } else {
            format!("chroot \"$1\" systemctl disable {}", disabled.join(" "))
        },
    ];
    let version = Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .expect("mmdebstrap");
    let recipe = format!(
        "cloud image v1\n{} {} {}\n{}\n{}\n{}",
        catalog.suite,
        catalog.mirror,
        catalog.architecture,
        all.join(","),
        hooks.join("\n"),
        String::from_utf8_lossy(&version.stdout)
    );
    let key = hex::encode(Sha256::digest(recipe.as_bytes()));
    let dir = cache().join("cloud-images").join(&key[..32]);
    let image = CloudImage {
        root: dir.join("root.ext4"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
    };
    if image.root.is_file() {
        return image;
    }
    let parent = dir.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let work = tempfile::Builder::new()
        .prefix(".cloud-image-")
        .tempdir_in(parent)
        .unwrap();
    let tree = work.path().join("tree");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "1800",
        "mmdebstrap",
        "--mode=root",
        "--variant=apt",
        "--format=directory",
    ])
    .arg(format!("--architectures={}", catalog.architecture))
    .arg(format!("--components={}", catalog.components.join(",")))
    .arg(format!("--include={}", all.join(",")))
    .args([
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
    ])
    .arg("--dpkgopt=path-exclude=/usr/share/locale/*");
    for h in &hooks {
        cmd.arg(format!("--customize-hook={h}"));
    }
    cmd.arg(&catalog.suite).arg(&tree).arg(&catalog.mirror);
    let st = cmd.status().expect("mmdebstrap");
    assert!(st.success(), "mmdebstrap (cloud image) failed: {st}");
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (link, name) in [("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")] {
        let target = std::fs::canonicalize(tree.join(link)).unwrap_or_else(|_| {
            // /vmlinuz points into /boot by a relative or absolute link.
            tree.join(
                std::fs::read_link(tree.join(link))
                    .unwrap()
                    .strip_prefix("/")
                    .unwrap(),
            )
        });
        std::fs::copy(&target, out.join(name)).unwrap();
    }
    let du = Command::new("du")
        .args(["-sm"])
        .arg(&tree)
        .output()
        .unwrap();
    let used: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let st = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "cloudimg", "-d"])
        .arg(&tree)
        .arg(out.join("root.ext4"))
        .arg(format!("{}M", used * 13 / 10 + 1024))
        .status()
        .unwrap();
    assert!(st.success(), "mke2fs of the cloud image failed");
    std::fs::rename(&out, &dir).unwrap();
    image
}

/// A network namespace holding the VM's tap, on the node's subnet; removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("pigsty-ci-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("ip");
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        for cmd in [
            vec!["ip", "tuntap", "add", "tap0", "mode", "tap"],
            vec!["ip", "link", "set", "tap0", "up"],
            vec!["ip", "addr", "add", HOST_IP, "dev", "tap0"],
        ] {
            let mut args = vec!["netns", "exec", &ns.0];
            args.extend(cmd);
            ip(&args);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills qemu if the test ends early.
struct Qemu(std::process::Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boot `disk` (a copy of the cloud image) with the CIDATA volume under TCG, and wait
/// (bounded) for the guest to power itself off; returns the serial console.
fn boot_until_poweroff(image: &CloudImage, disk: &Path, cidata: &Path) -> String {
    let ns = Netns::new();
    // Kept after the test (target/tmp) for a look at what the guest did.
    let console = root().join("target/tmp/image-cloudinit-console.log");
    std::fs::create_dir_all(console.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&console);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.0, "qemu-system-x86_64"])
        .args([
            "-machine", "q35", "-accel", "tcg", "-m", "2048", "-smp", "2",
        ])
        // The lab's CPU (its hashing and TLS instructions) and no devices beyond
        // the ones below.
        .args(["-cpu", pigsty::lab::vm::CPU, "-nodefaults", "-vga", "none"])
        .args(["-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .arg("-append")
        .arg("root=/dev/vda rw console=ttyS0,115200 net.ifnames=0")
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            cidata.display()
        ))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        .args(["-device", "virtio-net-pci,netdev=n0,mac=52:54:00:99:00:11"]);
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let mut qemu = Qemu(child);
    let read = || std::fs::read_to_string(&console).unwrap_or_default();
    // TCG on a shared two-core machine: a generous bound.
    let limit = std::time::Duration::from_secs(3600);
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(_)) = qemu.0.try_wait() {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "the guest did not power off within {limit:?}; console tail:\n{}",
            tail(&read())
        );
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    eprintln!("cloud-init guest ran for {:?}", start.elapsed());
    read()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// `debugfs -R CMD` on an ext4 image, stdout.
fn debugfs(img: &Path, cmd: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .expect("debugfs");
    out.stdout
}

/// What user-data's write_files says a file holds.
fn expected_content(f: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    use std::io::Read;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(f["content"].as_str().unwrap())
        .unwrap();
    match f["encoding"].as_str() {
        Some("gz+b64") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            out
        }
        _ => raw,
    }
}

#[test]
#[ignore = "needs root, mmdebstrap, the Debian mirror (once) and minutes of TCG: run by ci/test.sh"]
fn cloud_init_in_a_vm_puts_the_node_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = fixture_seed(&dir.path().join("seed"));
    let packages: Vec<String> = config["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    // The services the seed's runcmd disables (the packages step leaves them so).
    let disabled: Vec<String> = config["runcmd"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_array())
        .filter(|c| c.len() > 2 && c[0] == "systemctl" && c[1] == "disable")
        .flat_map(|c| c[2..].iter().map(|s| s.as_str().unwrap().to_string()))
        .collect();
    let image = cloud_image(&packages, &disabled);
    let disk = dir.path().join("disk.raw");
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(&image.root)
        .arg(&disk)
        .status()
        .unwrap();
    assert!(st.success());
    let cidata = dir.path().join("seed").join(NODE).join("cidata.img");
    let console = boot_until_poweroff(&image, &disk, &cidata);

    // cloud-init ran every module without error, the agent started, and finished.
    let report: Vec<&str> = console.lines().filter(|l| l.contains(REPORT)).collect();
    assert!(
        report.iter().any(|l| l.contains("report end")),
        "no report from the guest; console tail:\n{}",
        tail(&console)
    );
    assert!(
        report.iter().any(|l| l.contains("cloud-init status: done")),
        "cloud-init did not finish cleanly: {report:#?}\nconsole tail:\n{}",
        tail(&console)
    );
    assert!(
        console.contains("pigsty agent: step"),
        "pigsty-firstboot never ran; console tail:\n{}",
        tail(&console)
    );
    assert!(
        report.iter().any(|l| l.contains("agent done")),
        "the agent did not finish: {report:#?}\nconsole tail:\n{}",
        tail(&console)
    );

    // Every file of write_files is on the disk, with its bytes and mode.
    let files = config["write_files"].as_array().unwrap();
    for f in files {
        let path = f["path"].as_str().unwrap();
        let got = debugfs(&disk, &format!("cat {path}"));
        assert!(
            got == expected_content(f),
            "{path}: not what user-data wrote ({} bytes on disk)",
            got.len()
        );
        let stat = String::from_utf8_lossy(&debugfs(&disk, &format!("stat {path}"))).into_owned();
        let mode = f["permissions"].as_str().unwrap().trim_start_matches('0');
        assert!(
            stat.contains(&format!("Mode:  0{mode} ")) || stat.contains(&format!("Mode:  {mode} ")),
            "{path}: mode is not {mode}:\n{stat}"
        );
    }
    assert!(
        files.iter().any(|f| f["path"] == "/etc/pigsty/node.json"),
        "/etc/pigsty/node.json is not in write_files"
    );
    // The agent, installed by runcmd from the seed volume.
    let agent =
        std::fs::read(dir.path().join("seed").join(NODE).join("cloud-init/pigsty")).unwrap();
    let got = debugfs(&disk, "cat /usr/local/bin/pigsty");
    assert!(
        got == agent,
        "/usr/local/bin/pigsty on the disk is not the seed's agent ({} bytes)",
        got.len()
    );
    let stat = String::from_utf8_lossy(&debugfs(&disk, "stat /usr/local/bin/pigsty")).into_owned();
    assert!(
        stat.contains("Mode:  0755"),
        "/usr/local/bin/pigsty mode:\n{stat}"
    );
    // The offline apt switch is gone once runcmd ran.
    let apt = debugfs(&disk, "stat /etc/apt/apt.conf.d/99pigsty-offline");
    assert!(apt.is_empty(), "the offline apt snippet was left behind");
}
