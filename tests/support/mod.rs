//! Test harness for the first-boot agent: nodes on loopback addresses, each with its
//! own root directory (the rendered overlay of a test inventory) and its own
//! [`Processes`] service manager running the real etcd, Patroni and PostgreSQL.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pigsty::agent::service::{ProcessSpec, Processes};
use pigsty::agent::{Options, state::State};

/// A TCP port nobody listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on loopback")
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether the real components a test needs are installed; prints why not.
pub fn have(tools: &[&str]) -> bool {
    for t in tools {
        if !Path::new(t).exists() {
            eprintln!("skipping: {t} is not installed (ci/setup.sh installs it)");
            return false;
        }
    }
    true
}

/// One node of a test fleet.
pub struct TestNode {
    pub name: String,
    pub root: PathBuf,
    pub services: Processes,
}

impl TestNode {
    /// Render `role` of the inventory into a fresh root under `base/<dir>`.
    pub fn render(base: &Path, dir: &str, inventory: &str, role: &str) -> TestNode {
        let root = base.join(dir);
        std::fs::create_dir_all(&root).unwrap();
        let loaded = pigsty::inventory::load_str("test.yml", inventory)
            .unwrap_or_else(|e| panic!("test inventory is invalid: {e:?}"));
        let node = loaded.fleet.find(role).expect("role in the test inventory");
        let compiled =
            pigsty::compile::compile(&loaded.fleet, node, pigsty::catalog::Catalog::debian12())
                .expect("compiling the test node");
        for f in &compiled.files {
            let path = root.join(f.path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.content).unwrap();
        }
        let services = Processes::new(&root);
        services.define("etcd.service", etcd_spec(&root));
        TestNode {
            name: node.nodename.clone(),
            root,
            services,
        }
    }

    pub fn options(&self, wait: Duration) -> Options {
        let mut o = Options::new(&self.root);
        o.wait = wait;
        o.request = Duration::from_secs(2);
        o
    }

    pub fn firstboot(&self, opts: &Options) -> anyhow::Result<State> {
        pigsty::agent::firstboot(opts, &self.services)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }
}

/// etcd as Debian's etcd.service runs it: configured only by `/etc/default/etcd`
/// (plus the agent's override file); the data dir is mapped into the node's root.
pub fn etcd_spec(root: &Path) -> ProcessSpec {
    ProcessSpec {
        program: "/usr/bin/etcd".into(),
        env_files: vec![root.join("etc/default/etcd")],
        env: vec![(
            "ETCD_DATA_DIR".into(),
            root.join("data/etcd").display().to_string(),
        )],
        log: root.join("etcd.log"),
        ..ProcessSpec::default()
    }
}

/// An inventory of etcd members on `net.1`, `net.2`, ... with free ports.
pub fn etcd_inventory(net: &str, ports: &[(u16, u16)]) -> String {
    let mut hosts = String::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        hosts.push_str(&format!(
            "        {net}.{}: {{ etcd_seq: {}, etcd_port: {client}, etcd_peer_port: {peer} }}\n",
            i + 1,
            i + 1
        ));
    }
    format!(
        "all:\n  children:\n    etcd:\n      hosts:\n{hosts}      vars: {{ etcd_cluster: etcd }}\n  vars:\n    node_ntp_enabled: false\n"
    )
}

pub fn port_pairs(n: usize) -> Vec<(u16, u16)> {
    (0..n).map(|_| (free_port(), free_port())).collect()
}
