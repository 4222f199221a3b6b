//! The fleet PKI as `pigsty` makes and keeps it: `build-image` (here `pki issue`)
//! creates the CA beside the inventory with its key 0600; each node's certificate
//! chains to it and names the node's IP and names; it is kept and reused, so
//! renders of the same inputs are identical, and re-issued when the names change.
//! OpenSSL checks the chain and serves a TLS handshake with a node's pair.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const INVENTORY: &str = "all:
  children:
    etcd: { hosts: { 10.10.10.10: { etcd_seq: 1 } }, vars: { etcd_cluster: etcd } }
    pg-test:
      hosts: { 10.10.10.11: { pg_seq: 1, pg_role: primary } }
      vars: { pg_cluster: pg-test }
  vars: { admin_ip: 10.10.10.10 }
";

fn pigsty(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["-i", "inv.yml"])
        .args(args)
        .current_dir(dir)
        .env_remove("PIGSTY_PKI")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = pigsty(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is not installed: run ci/setup.sh")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_ca_is_made_once_and_node_certificates_chain_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), INVENTORY).unwrap();
    // No CA yet: render uses none, and `pki list` says so.
    assert_eq!(pigsty(d, &["pki", "list"]).status.code(), Some(2));
    ok(d, &["render", "--role", "pg-test-1", "--out", "plain"]);
    assert!(!d.join("plain/pg/cert").exists());
    assert!(!d.join("files/pki").exists(), "render creates no CA");

    ok(d, &["pki", "issue", "--role", "pg-test-1"]);
    // A fleet is secured whole or not at all (etcd's members and clients must agree):
    // with one node still without a certificate, render carries none.
    ok(d, &["render", "--role", "pg-test-1", "--out", "partial"]);
    assert!(!d.join("partial/pg/cert").exists());
    ok(d, &["pki", "issue", "--role", "etcd-1"]);
    let pki = d.join("files/pki");
    assert_eq!(mode(&pki.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&pki.join("nodes/pg-test-1.key")), 0o600);
    let verify = openssl(
        &[
            "verify",
            "-CAfile",
            "files/pki/ca/ca.crt",
            "files/pki/nodes/pg-test-1.crt",
        ],
        d,
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let text = openssl(
        &[
            "x509",
            "-in",
            "files/pki/nodes/pg-test-1.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        d,
    );
    let sans = String::from_utf8_lossy(&text.stdout);
    assert!(
        sans.contains("IP Address:10.10.10.11") && sans.contains("DNS:pg-test-1"),
        "{sans}"
    );

    // A render now carries the pair; the same inputs render the same bytes.
    ok(d, &["render", "--role", "pg-test-1", "--out", "a"]);
    ok(d, &["render", "--role", "pg-test-1", "--out", "b"]);
    for f in [
        "pg/cert/server.key",
        "pg/cert/server.crt",
        "pg/cert/ca.crt",
        "etc/pki/ca.crt",
    ] {
        let a = std::fs::read(d.join("a").join(f)).unwrap();
        assert_eq!(a, std::fs::read(d.join("b").join(f)).unwrap(), "{f}");
    }
    assert_eq!(mode(&d.join("a/pg/cert/server.key")), 0o600);
    // With the CA's pair, no snakeoil pair is made at boot (nothing serves it, and a
    // node booted from a slot has a read-only /etc/ssl).
    for f in [
        "usr/lib/pigsty/host-keys",
        "etc/systemd/system/pigsty-host-keys.service",
    ] {
        let text = std::fs::read_to_string(d.join("a").join(f)).unwrap();
        assert!(!text.contains("ssl-cert-snakeoil"), "{f}: {text}");
        let plain = std::fs::read_to_string(d.join("plain").join(f)).unwrap();
        assert!(
            plain.contains("ssl-cert-snakeoil"),
            "{f} without a CA: {plain}"
        );
    }
    let patroni = std::fs::read_to_string(d.join("a/etc/patroni/patroni.yml")).unwrap();
    assert!(
        patroni.contains("\"ssl_cert_file\": \"/pg/cert/server.crt\""),
        "{patroni}"
    );
    assert!(
        patroni.contains("\"ssl_ca_file\": \"/pg/cert/ca.crt\""),
        "{patroni}"
    );
    // etcd: TLS to and from its peers and clients, RBAC; Patroni reaches it as its
    // cluster's user, over TLS with the node's pair.
    assert!(
        patroni.contains("protocol: https") && patroni.contains("username: \"pg-test\""),
        "{patroni}"
    );
    ok(d, &["render", "--role", "etcd-1", "--out", "e"]);
    let env = std::fs::read_to_string(d.join("e/etc/default/etcd")).unwrap();
    for line in [
        "ETCD_LISTEN_CLIENT_URLS=\"https://10.10.10.10:2379,https://127.0.0.1:2379\"",
        "ETCD_CLIENT_CERT_AUTH=true",
        "ETCD_PEER_CLIENT_CERT_AUTH=true",
        "ETCD_KEY_FILE=/etc/etcd/server.key",
    ] {
        assert!(env.lines().any(|l| l == line), "{line}\n{env}");
    }
    assert_eq!(mode(&d.join("e/etc/etcd/server.key")), 0o600);
    let node: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("e/etc/pigsty/node.json")).unwrap()).unwrap();
    let access = &node["etcd"]["access"];
    assert_eq!(access["user"], "root");
    assert_eq!(access["rbac"]["users"][0]["name"], "pg-test");
    assert_eq!(access["rbac"]["users"][0]["prefixes"][0], "/pg/pg-test/");
    // The PostgreSQL node holds its cluster's etcd password, not root's.
    let pg_node = std::fs::read_to_string(d.join("a/etc/pigsty/node.json")).unwrap();
    assert!(!pg_node.contains("Etcd.Root"), "{pg_node}");
    assert!(pg_node.contains("\"user\": \"pg-test\""), "{pg_node}");
    // Certificates carry no common name (etcd's gateway refuses a client with one).
    let subject = openssl(
        &["x509", "-in", "e/etc/etcd/server.crt", "-noout", "-subject"],
        d,
    );
    let subject = String::from_utf8_lossy(&subject.stdout);
    assert!(!subject.contains("CN"), "{subject}");
    let ca_before = std::fs::read(pki.join("ca/ca.crt")).unwrap();

    // New names: render (which writes nothing beside the inventory) carries no
    // certificate; the next build (here, `pki issue`) issues one, under the same CA.
    let moved = INVENTORY.replace("10.10.10.11", "10.10.10.21");
    std::fs::write(d.join("inv.yml"), moved).unwrap();
    let list = ok(d, &["pki", "list"]);
    assert!(list.contains("names differ"), "{list}");
    ok(d, &["render", "--role", "pg-test-1", "--out", "stale"]);
    assert!(!d.join("stale/pg/cert").exists());
    ok(d, &["pki", "issue", "--role", "pg-test-1"]);
    ok(d, &["render", "--role", "pg-test-1", "--out", "c"]);
    let c = std::fs::read(d.join("c/pg/cert/server.crt")).unwrap();
    assert_ne!(c, std::fs::read(d.join("a/pg/cert/server.crt")).unwrap());
    assert_eq!(std::fs::read(pki.join("ca/ca.crt")).unwrap(), ca_before);
    let sans = openssl(
        &[
            "x509",
            "-in",
            "c/pg/cert/server.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        d,
    );
    assert!(String::from_utf8_lossy(&sans.stdout).contains("IP Address:10.10.10.21"));

    // A CA key others can read is refused, not used.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        pki.join("ca/ca.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = pigsty(d, &["render", "--role", "pg-test-1", "--out", "d"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be 0600"));
}

/// A TLS client that trusts only the fleet CA completes a handshake with a server
/// holding a node's pair, under the node's name; under another name it refuses.
#[test]
fn a_client_trusting_the_ca_verifies_a_node_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("inv.yml"), INVENTORY).unwrap();
    ok(d, &["pki", "issue", "--role", "pg-test-1"]);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-cert",
            "files/pki/nodes/pg-test-1.crt",
            "-key",
            "files/pki/nodes/pg-test-1.key",
        ])
        .current_dir(d)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let connect = |name: &str| {
        Command::new("timeout")
            .args(["10", "openssl", "s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-CAfile", "files/pki/ca/ca.crt", "-verify_return_error"])
            .args(["-verify_hostname", name, "-brief"])
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let good = connect("pg-test-1");
    let bad = connect("pg-test-2");
    let _ = server.kill();
    let _ = server.wait();
    assert!(up, "openssl s_server did not listen");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        !bad.status.success(),
        "a name the certificate lacks was accepted"
    );
}
