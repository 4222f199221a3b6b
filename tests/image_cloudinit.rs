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
            "--role",
            "pg-test-1",
            "--format",
            "cloud-init",
            "--out",
        ])
        .arg(out)
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
        packages.contains(&"postgresql-15") && packages.contains(&"patroni"),
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
        "/usr/local/bin/pigsty",
    ] {
        assert!(paths.contains(&p), "{p} not written by user-data");
    }
    // The CIDATA volume carries the same three files.
    let img = std::fs::File::open(dir.path().join("a/pg-test-1/cidata.img")).unwrap();
    let fs = fatfs::FileSystem::new(img, fatfs::FsOptions::new()).unwrap();
    assert_eq!(fs.volume_label(), "CIDATA");
    let names: Vec<String> = fs
        .root_dir()
        .iter()
        .map(|e| e.unwrap().file_name())
        .collect();
    for n in ["meta-data", "user-data", "network-config"] {
        assert!(
            names.iter().any(|x| x == n),
            "{n} missing from CIDATA: {names:?}"
        );
    }
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
