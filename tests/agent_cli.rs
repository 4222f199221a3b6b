//! The agent's command line: `agent firstboot`, `agent status`, `status`, on roots and
//! endpoints where nothing runs (fast; no root needed).

use std::process::Command;

fn pigsty(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn firstboot_without_node_json_fails_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let out = pigsty(&["agent", "firstboot", "--root", r, "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etc/pigsty/node.json"), "{err}");
}

#[test]
fn status_of_a_node_that_never_ran() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let out = pigsty(&["agent", "status", "--root", r, "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["done"], false);
    let out = pigsty(&["agent", "status", "--root", r]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("first boot: not started")
    );
}

#[test]
fn fleet_status_without_etcd_is_a_runtime_error() {
    // Port 9 on loopback: nothing listens there, the connection is refused at once.
    let out = pigsty(&["status", "--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no etcd endpoint answered") && err.contains("127.0.0.1:9"),
        "{err}"
    );
}
