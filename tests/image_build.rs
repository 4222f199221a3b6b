//! Images, for real: build a node's artifacts with mmdebstrap and mke2fs and check
//! they are byte-identical across builds, private to their owner, and free of what
//! must not be baked in. The node is the lab's pg-lab-1, so the package layer built
//! here is the one the lab e2e (tests/lab.rs) boots, cached between them; the lab
//! boots these disks both ways a machine starts one (qemu's direct kernel boot and
//! UEFI firmware with the disk's systemd-boot).
//!
//! This needs root, network access to the Debian mirror (for the layer, once; it is
//! cached in target/pigsty-cache) and minutes of CPU, so it is `#[ignore]`d in plain
//! `cargo test`; ci/test.sh runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

const NODE: &str = "pg-lab-1";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cache() -> PathBuf {
    std::env::var_os("PIGSTY_CACHE")
        .map_or_else(|| root().join("target/pigsty-cache"), PathBuf::from)
}

fn build(out: &Path, formats: &str) -> serde_json::Value {
    let inv = root().join("inventory/lab.yml");
    let status = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args([
            "-i",
            inv.to_str().unwrap(),
            "build-image",
            // The lab's inventory keeps Pigsty's default passwords: a test fleet.
            "--allow-default-passwords",
            "--role",
            NODE,
            "--format",
            formats,
            "--out",
        ])
        .arg(out)
        .env("PIGSTY_CACHE", cache())
        // One fleet PKI for the builds of a test (beside their output directories).
        .env("PIGSTY_PKI", out.parent().unwrap().join("pki"))
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
    let dir = tempfile::tempdir().unwrap();
    let a = build(&dir.path().join("a"), "rootfs,raw,qcow2");
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
    // disk.raw has the A/B layout: the ESP, root and bundle of slots A and B, and the
    // data partition; slot A holds the shared root byte for byte, and the command
    // line boots slot A with its bundle's digest.
    {
        let raw = dir.path().join("a").join(NODE).join("disk.raw");
        let disk = gpt::GptConfig::new()
            .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
            .open(&raw)
            .unwrap();
        let parts = disk.partitions().clone();
        let labels: Vec<&str> = (1..=6).map(|n| parts[&n].name.as_str()).collect();
        assert_eq!(
            labels,
            [
                "ESP",
                "pigsty-root-a",
                "pigsty-bundle-a",
                "pigsty-root-b",
                "pigsty-bundle-b",
                "pigsty-data"
            ]
        );
        let root_sha = a["root"]["sha256"].as_str().unwrap();
        let root_len = a["root"]["size"].as_u64().unwrap();
        let slot_a = &parts[&2];
        assert!((slot_a.last_lba + 1 - slot_a.first_lba) * 512 >= root_len);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "dd if={} bs=512 skip={} count={} status=none | sha256sum",
                raw.display(),
                slot_a.first_lba,
                root_len / 512
            ))
            .output()
            .unwrap();
        let sum = String::from_utf8_lossy(&out.stdout);
        assert_eq!(sum.split_whitespace().next(), Some(root_sha), "slot A");
        let cmdline =
            std::fs::read_to_string(dir.path().join("a").join(NODE).join("cmdline")).unwrap();
        assert!(
            cmdline.contains("pigsty.slot=a")
                && cmdline.contains(&format!("pigsty.root=sha256:{root_sha}")),
            "{cmdline}"
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
        !listing
            .lines()
            .any(|l| l.contains(" var/lib/postgresql/") && l.ends_with("/main/PG_VERSION")),
        "Debian's main cluster baked in"
    );
    assert!(listing.contains("usr/local/bin/pigsty"), "agent missing");
    // The node's pair from the fleet CA, the key readable by PostgreSQL alone.
    let key = listing
        .lines()
        .find(|l| l.ends_with(" pg/cert/server.key"))
        .expect("pg/cert/server.key in the image");
    assert!(key.starts_with("-rw------- "), "{key}");
    assert!(
        listing.lines().any(|l| l.ends_with(" etc/pki/ca.crt")),
        "no CA certificate"
    );
    // Units: the agent starts the module services in order; systemd starts the
    // exporters at every boot (prometheus-postgres-exporter answers `pg_up 0` until
    // PostgreSQL is up).
    let wants = "etc/systemd/system/multi-user.target.wants/";
    let linked = |unit: &str| {
        listing
            .lines()
            .find(|l| l.contains(&format!(" {wants}{unit} -> ")))
            .map(|l| l.rsplit(" -> ").next().unwrap().to_string())
    };
    for unit in [
        "prometheus-node-exporter.service",
        "prometheus-postgres-exporter.service",
    ] {
        assert_eq!(
            linked(unit).as_deref(),
            Some(format!("/lib/systemd/system/{unit}").as_str()),
            "{unit} is not enabled"
        );
    }
    // The journal shipper, an instance of the image's own template, and (on this
    // infra node) the receiver's and reader's sockets.
    assert_eq!(
        linked("pigsty-log-upload@10.10.10.11:9428.service").as_deref(),
        Some("/etc/systemd/system/pigsty-log-upload@.service")
    );
    for unit in [
        "systemd-journal-remote.socket",
        "systemd-journal-gatewayd.socket",
    ] {
        let link = format!(
            " etc/systemd/system/sockets.target.wants/{unit} -> /lib/systemd/system/{unit}"
        );
        assert!(listing.contains(&link), "{unit} is not enabled");
    }
    for unit in [
        "etcd.service",
        "patroni.service",
        "pgbouncer.service",
        "haproxy.service",
    ] {
        assert_eq!(
            linked(unit),
            None,
            "{unit} starts before the agent orders it"
        );
    }
    // Nothing for e2scrub on a node without LVM (about 40 s of a vCPU at every boot
    // under emulation), nor for apt's timers on a node never upgraded in place.
    assert_eq!(linked("e2scrub_reap.service"), None);
    for timer in [
        "e2scrub_all.timer",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
    ] {
        assert!(
            !listing.contains(&format!(
                " etc/systemd/system/timers.target.wants/{timer} -> "
            )),
            "{timer} is enabled"
        );
    }
    let machine_id = listing
        .lines()
        .find(|l| l.ends_with(" etc/machine-id"))
        .expect("etc/machine-id");
    assert!(
        machine_id.contains(" 0 "),
        "machine-id must be empty: {machine_id}"
    );
    // The same inputs, the same bytes. The first build's GiBs go first (their
    // digests are in its manifest): a CI machine's disk is shared.
    std::fs::remove_dir_all(dir.path().join("a")).unwrap();
    let b = build(&dir.path().join("b"), "rootfs,raw,qcow2");
    assert_eq!(
        artifacts(&a),
        artifacts(&b),
        "two builds of the same inputs differ"
    );
}

/// `build-image --all --format bundle` on the lab's three nodes. pg-lab-2 and
/// pg-lab-3 have the same package set, pg-lab-1 (also the infra node) another: two
/// shared roots, each written once and named by its sha256, and a small bundle per
/// node holding the node's own files (its keys private) and nothing of the root's.
/// A second build gives the same bytes.
#[test]
#[ignore = "needs root, mmdebstrap and the Debian mirror: run by ci/test.sh"]
fn bundles_go_over_one_shared_root_per_package_set() {
    let dir = tempfile::tempdir().unwrap();
    let build_all = |out: &Path| {
        let status = Command::new(env!("CARGO_BIN_EXE_pigsty"))
            .arg("-i")
            .arg(root().join("inventory/lab.yml"))
            .args(["build-image", "--allow-default-passwords", "--all"])
            .args(["--format", "bundle", "--format", "qcow2", "--out"])
            .arg(out)
            .env("PIGSTY_CACHE", cache())
            .env("PIGSTY_PKI", dir.path().join("pki"))
            .status()
            .expect("running pigsty build-image");
        assert!(status.success(), "build-image --all --format bundle failed");
        let manifest = |n: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(out.join(n).join("manifest.json")).unwrap())
                .unwrap()
        };
        ["pg-lab-1", "pg-lab-2", "pg-lab-3"].map(manifest)
    };
    let a = dir.path().join("a");
    let [m1, m2, m3] = build_all(&a);
    let root_of = |m: &serde_json::Value| m["root"]["path"].as_str().unwrap().to_string();
    assert_eq!(root_of(&m2), root_of(&m3), "same package set, same root");
    assert_ne!(root_of(&m1), root_of(&m2));
    let mut roots: Vec<String> = std::fs::read_dir(a.join("_roots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    roots.sort();
    // Per package set: the root, and the A/B base disk the nodes' qcow2s go over.
    assert_eq!(
        roots.iter().filter(|r| r.ends_with(".ext4")).count(),
        2,
        "{roots:?}"
    );
    assert_eq!(
        roots.iter().filter(|r| r.ends_with(".ab.raw")).count(),
        2,
        "{roots:?}"
    );
    // Both are the cache's own files, linked (the test's directory is on the cache's
    // filesystem), not copies: a second fleet build writes no GiB again. Beside each
    // base disk, its root's kernel and initrd for a direct kernel boot.
    for r in roots
        .iter()
        .filter(|r| r.ends_with(".ext4") || r.ends_with(".ab.raw"))
    {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::metadata(a.join("_roots").join(r)).unwrap().nlink();
        assert!(
            links >= 2,
            "{r} has {links} link(s): copied out of the cache"
        );
        if let Some(sha) = r.strip_suffix(".ab.raw") {
            for boot in ["vmlinuz", "initrd.img"] {
                assert!(
                    a.join("_roots").join(format!("{sha}.{boot}")).is_file(),
                    "{sha}.{boot} missing from {roots:?}"
                );
            }
        }
    }
    // Named by its content.
    let shared = a.join(root_of(&m2));
    let sum = Command::new("sha256sum").arg(&shared).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(
        sum.split_whitespace().next(),
        m2["root"]["sha256"].as_str(),
        "{}",
        shared.display()
    );
    assert!(root_of(&m2).ends_with(&format!("{}.ext4", m2["root"]["sha256"].as_str().unwrap())));
    // The root holds the agent and none of a node's files.
    let debugfs = |path: &str| {
        let out = Command::new("debugfs")
            .args(["-R", &format!("stat {path}")])
            .arg(&shared)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    assert!(debugfs("/usr/local/bin/pigsty").contains("Type: regular"));
    for node_file in [
        "/etc/pigsty/node.json",
        "/pg/cert/server.key",
        "/etc/patroni/patroni.yml",
    ] {
        let stat = debugfs(node_file);
        assert!(
            stat.contains("File not found"),
            "{node_file} in the shared root: {stat}"
        );
    }
    // Each bundle: private, small, the node's own files.
    for (name, m) in [("pg-lab-1", &m1), ("pg-lab-2", &m2), ("pg-lab-3", &m3)] {
        use std::os::unix::fs::PermissionsExt;
        let bundle = a.join(name).join("bundle.tar");
        let meta = std::fs::metadata(&bundle).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        assert!(meta.len() < 5 << 20, "{name}: {} bytes", meta.len());
        let listing = Command::new("tar")
            .arg("-tvf")
            .arg(&bundle)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(" etc/pigsty/node.json")),
            "{name}"
        );
        // The image names the plan it was built from (what the agent reports).
        let identity = Command::new("tar")
            .arg("-xOf")
            .arg(&bundle)
            .arg("etc/pigsty/image.json")
            .output()
            .unwrap();
        let identity: serde_json::Value = serde_json::from_slice(&identity.stdout)
            .unwrap_or_else(|e| panic!("{name}: image.json: {e}"));
        assert_eq!(identity["plan_digest"], m["plan_digest"], "{name}");
        assert_eq!(identity["node"], name);
        let key = listing
            .lines()
            .find(|l| l.ends_with(" pg/cert/server.key"))
            .unwrap_or_else(|| panic!("{name}: no key in\n{listing}"));
        assert!(key.starts_with("-rw------- "), "{key}");
        assert!(
            !listing.contains("usr/local/bin/pigsty"),
            "{name}: the agent"
        );
        for packaged in [
            " usr/bin/",
            " usr/sbin/",
            " usr/share/",
            " usr/lib/systemd/",
        ] {
            assert!(
                !listing.contains(packaged),
                "{name}: package files ({packaged})"
            );
        }
        assert!(
            m["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == "bundle.tar"),
            "{name}"
        );
    }
    // Each node's A/B qcow2: about a MiB over its root's base disk, private, and
    // read whole (qemu-img convert) it holds the node's bundle in slot A and an
    // entry that names it.
    for (name, m) in [("pg-lab-1", &m1), ("pg-lab-2", &m2), ("pg-lab-3", &m3)] {
        use std::os::unix::fs::PermissionsExt;
        let sha = m["root"]["sha256"].as_str().unwrap();
        let qcow = a.join(name).join("disk.qcow2");
        let meta = std::fs::metadata(&qcow).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        assert!(meta.len() < 5 << 20, "{name}: {} bytes", meta.len());
        let info = Command::new("qemu-img")
            .args(["info", "--output", "json"])
            .arg(&qcow)
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(
            info["backing-filename"],
            format!("../_roots/{sha}.ab.raw"),
            "{name}"
        );
        if name != "pg-lab-2" {
            continue;
        }
        let raw = dir.path().join("pg-lab-2.raw");
        let st = Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(&qcow)
            .arg(&raw)
            .status()
            .unwrap();
        assert!(st.success());
        let disk = gpt::GptConfig::new()
            .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
            .open(&raw)
            .unwrap();
        let parts = disk.partitions().clone();
        let span = |n: u32| {
            let p = &parts[&n];
            (p.first_lba * 512, (p.last_lba + 1 - p.first_lba) * 512)
        };
        // Only the partitions read (the disk is GiBs).
        let part = |n: u32| {
            use std::io::{Read, Seek};
            let (at, len) = span(n);
            let mut f = std::fs::File::open(&raw).unwrap();
            f.seek(std::io::SeekFrom::Start(at)).unwrap();
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf).unwrap();
            buf
        };
        let tar = std::fs::read(a.join(name).join("bundle.tar")).unwrap();
        let digest = pigsty::bundle::digest(&tar);
        let bundle_a = part(3);
        let got = pigsty::bundle::read(&mut &bundle_a[..], bundle_a.len() as u64, &digest).unwrap();
        assert_eq!(got, tar);
        let esp = std::io::Cursor::new(part(1));
        let fs = fatfs::FileSystem::new(esp, fatfs::FsOptions::new()).unwrap();
        let mut entry = String::new();
        std::io::Read::read_to_string(
            &mut fs
                .root_dir()
                .open_file("loader/entries/pigsty-1-a.conf")
                .unwrap(),
            &mut entry,
        )
        .unwrap();
        assert!(
            entry.contains(&format!("pigsty.bundle=sha256:{digest}"))
                && entry.contains(&format!("pigsty.root=sha256:{sha}")),
            "{entry}"
        );
        // Its cmdline (for a direct kernel boot) is the entry's.
        let cmdline = std::fs::read_to_string(a.join(name).join("cmdline")).unwrap();
        assert!(
            entry.contains(&format!("options {}", cmdline.trim())),
            "{cmdline} is not the entry's: {entry}"
        );
        std::fs::remove_file(&raw).unwrap();
    }
    // The same inputs, the same bytes (the first build's files gone first: a CI
    // machine's disk is shared).
    std::fs::remove_dir_all(&a).unwrap();
    let [n1, n2, n3] = build_all(&dir.path().join("b"));
    for (x, y) in [(&m1, &n1), (&m2, &n2), (&m3, &n3)] {
        assert_eq!(x["root"], y["root"]);
        assert_eq!(artifacts(x), artifacts(y));
    }
}
