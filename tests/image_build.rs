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
    let machine_id = listing
        .lines()
        .find(|l| l.ends_with(" etc/machine-id"))
        .expect("etc/machine-id");
    assert!(
        machine_id.contains(" 0 "),
        "machine-id must be empty: {machine_id}"
    );
}
