//! Golden rendered trees: every node of the three example inventories and the admin
//! node of Pigsty v4.5's conf/ha/trio.yml (tests/fixtures/pigsty-v4.5.0), rendered and
//! compared file by file with tests/fixtures/render/<inventory>/<nodename>/. The
//! modes and owners are checked through the golden plans (tests/cli.rs). Regenerate
//! on purpose with PIGSTY_BLESS=1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pigsty::compile::compile;
use pigsty::inventory::{Source, load};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.insert(format!("/{}", rel.to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn golden_render_trees() {
    let bless = std::env::var_os("PIGSTY_BLESS").is_some();
    let mut mismatches = Vec::new();
    // The example inventories, every node; and the admin node of Pigsty v4.5's
    // conf/ha/trio.yml (infra, the primary of pg-meta with its VIP, baseline and
    // crontab, etcd, MinIO, keepalived, haproxy_services), built from Pigsty's default
    // repositories, so with Grafana.
    let sets: [(&str, &str, Option<&str>); 4] = [
        ("pigsty", "inventory/pigsty.yml", None),
        ("sandbox", "inventory/sandbox.yml", None),
        ("lab", "inventory/lab.yml", None),
        (
            "pigsty-v4.5.0-ha-trio",
            "tests/fixtures/pigsty-v4.5.0/ha/trio.yml",
            Some("10.10.10.10"),
        ),
    ];
    for (inv, file, only) in sets {
        let loaded = load(&Source::File(root().join(file))).unwrap();
        let nodes = loaded
            .fleet
            .nodes
            .iter()
            .filter(|n| only.is_none_or(|ip| n.ip.to_string() == ip));
        for node in nodes {
            let compiled = compile(&loaded.fleet, node).unwrap();
            let golden = root().join(format!("tests/fixtures/render/{inv}/{}", node.nodename));
            if bless {
                let _ = std::fs::remove_dir_all(&golden);
                for f in &compiled.files {
                    let path = golden.join(f.path.trim_start_matches('/'));
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, &f.content).unwrap();
                }
            }
            let want = files_under(&golden);
            let got: BTreeSet<String> = compiled.files.iter().map(|f| f.path.clone()).collect();
            for missing in want.difference(&got) {
                mismatches.push(format!(
                    "{inv}/{}: {missing} is no longer rendered",
                    node.nodename
                ));
            }
            for f in &compiled.files {
                let path = golden.join(f.path.trim_start_matches('/'));
                match std::fs::read(&path) {
                    Ok(bytes) if bytes == f.content => {}
                    Ok(_) => mismatches.push(format!(
                        "{inv}/{}: {} differs from {}",
                        node.nodename,
                        f.path,
                        path.display()
                    )),
                    Err(_) => mismatches.push(format!(
                        "{inv}/{}: {} is new (no golden file)",
                        node.nodename, f.path
                    )),
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "rendered trees differ from tests/fixtures/render (diff them; bless with PIGSTY_BLESS=1 if intended):\n{}",
        mismatches.join("\n")
    );
}

/// Rendering is a pure function: the same inventory gives the same bytes.
#[test]
fn rendering_is_deterministic() {
    let loaded = load(&Source::File(root().join("inventory/sandbox.yml"))).unwrap();
    for node in &loaded.fleet.nodes {
        let a = compile(&loaded.fleet, node).unwrap();
        let b = compile(&loaded.fleet, node).unwrap();
        assert_eq!(a.plan, b.plan);
        assert_eq!(a.files, b.files);
    }
}

/// `/etc/resolv.conf` is Pigsty's: `node_dns_options` then one `nameserver` per
/// `node_dns_servers` entry; `node_dns_method: none` leaves the file out of the image.
#[test]
fn resolv_conf_follows_node_dns() {
    let render = |vars: &str| {
        let text = format!(
            "all:\n  children:\n    n: {{ hosts: {{ 10.0.0.5: {{}} }} }}\n  vars: {{ admin_ip: 10.0.0.9, {vars} }}\n"
        );
        let loaded = pigsty::inventory::load_str("dns.yml", &text).unwrap();
        let node = &loaded.fleet.nodes[0];
        let compiled = compile(&loaded.fleet, node).unwrap();
        compiled
            .files
            .iter()
            .find(|f| f.path == "/etc/resolv.conf")
            .map(|f| String::from_utf8(f.content.clone()).unwrap())
    };
    let text = render(
        "node_dns_method: overwrite, node_dns_servers: ['${admin_ip}', 1.1.1.1], node_dns_options: ['options timeout:2', 'search pigsty']",
    )
    .expect("resolv.conf rendered");
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "options timeout:2",
            "search pigsty",
            "nameserver 10.0.0.9",
            "nameserver 1.1.1.1"
        ]
    );
    assert_eq!(render("node_dns_method: none"), None);
}
