//! `redis_mode: cluster` formed by the first-boot agent, with Debian's redis-server on
//! loopback: two nodes of three instances each (as Pigsty's `conf/demo/redis.yml`
//! declares `redis-test`), one replica per primary. The cluster forms, a key written
//! through one node is read through the other, and a reimaged node (empty data, old
//! identities gone) rejoins with every key still there.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::processes::ProcessSpec;
use support::{TestNode, require_tools};

const NET: &str = "127.0.16";
const PASSWORD: &str = "redis.test";
const KEYS: usize = 60;

/// Two redis nodes of three cluster instances each, on `NET.1` and `NET.2`.
fn inventory(ports: &[u16]) -> String {
    let inst = |p: &[u16]| {
        p.iter()
            .map(|p| format!("{p}: {{}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "all:
  children:
    redis-test:
      hosts:
        {NET}.1: {{ redis_node: 1, redis_instances: {{ {} }} }}
        {NET}.2: {{ redis_node: 2, redis_instances: {{ {} }} }}
      vars: {{ redis_cluster: redis-test, redis_password: '{PASSWORD}', redis_mode: cluster, redis_max_memory: 32MB }}
  vars:
    node_ntp_enabled: false
",
        inst(&ports[..3]),
        inst(&ports[3..])
    )
}

/// A port that is free, and whose cluster bus port (port + 10000, redis's default,
/// which `redis-cli --cluster` assumes) is free too.
fn cluster_port(taken: &[u16]) -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let start = 20000 + (std::process::id() % 20000) as u16;
    (0..20000u16)
        .map(|i| 20000 + (start - 20000 + i * 7) % 35000)
        .find(|&p| {
            !taken.contains(&p) && !taken.contains(&(p + 10000)) && free(p) && free(p + 10000)
        })
        .expect("a free port pair below 65536")
}

/// Render one node and define its instances' units: the rendered config, bound to
/// the node's own loopback address, with data under the node's root. Every loopback
/// connection leaves from 127.0.0.1, so the instances announce their node's address
/// (`cluster-announce-ip`); on a network each node's own address is the source.
fn node(base: &Path, dir: &str, inv: &str, ip: &str, ports: &[u16]) -> TestNode {
    let node = TestNode::render(base, dir, inv, ip);
    for port in ports {
        let name = format!(
            "redis-test-{}-{port}",
            if ip.ends_with(".1") { 1 } else { 2 }
        );
        let conf = node.root.join(format!("etc/redis/{name}.conf"));
        let data = node.root.join("data/redis").join(&name);
        std::fs::create_dir_all(&data).unwrap();
        let text = std::fs::read_to_string(&conf).expect("rendered redis config");
        assert!(text.contains("cluster-enabled yes"), "{name}: {text}");
        let mut out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("bind ") {
                    format!("bind {ip}")
                } else if l.starts_with("dir ") {
                    format!("dir {}", data.display())
                } else {
                    l.to_string()
                }
            })
            .collect();
        out.push(format!("cluster-announce-ip {ip}"));
        std::fs::write(&conf, out.join("\n") + "\n").unwrap();
        node.services.define(
            &format!("pigsty-redis@{name}.service"),
            ProcessSpec {
                program: "/usr/bin/redis-server".into(),
                args: vec![conf.display().to_string()],
                log: node.root.join(format!("{name}.log")),
                ..ProcessSpec::default()
            },
        );
    }
    node
}

fn cli(ip: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .env("REDISCLI_AUTH", PASSWORD)
        .args(["-c", "-h", ip, "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn info(ip: &str, port: u16, key: &str) -> String {
    let text = cli(ip, port, &["cluster", "info"]);
    pigsty::agent::redis::info_value(&text, key).unwrap_or_else(|| panic!("{key} in {text}"))
}

fn nodes(ip: &str, port: u16) -> Vec<pigsty::agent::redis::ClusterNode> {
    pigsty::agent::redis::parse_nodes(&cli(ip, port, &["cluster", "nodes"]))
}

fn host(addr: &str) -> &str {
    addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr)
}

/// Every instance sees one healthy cluster of six: three primaries serving every
/// slot, each with one replica on the other node.
fn assert_healthy(all: &[(String, u16)]) {
    for (ip, port) in all {
        assert_eq!(info(ip, *port, "cluster_state"), "ok", "{ip}:{port}");
        assert_eq!(info(ip, *port, "cluster_known_nodes"), "6", "{ip}:{port}");
        assert_eq!(info(ip, *port, "cluster_size"), "3", "{ip}:{port}");
        assert_eq!(info(ip, *port, "cluster_slots_ok"), "16384", "{ip}:{port}");
    }
    let table = nodes(&all[0].0, all[0].1);
    let masters: Vec<_> = table.iter().filter(|n| n.is_master()).collect();
    assert_eq!(masters.len(), 3, "{table:#?}");
    assert_eq!(masters.iter().map(|m| m.slots).sum::<u32>(), 16384);
    for m in &masters {
        let replicas: Vec<_> = table
            .iter()
            .filter(|n| n.master.as_deref() == Some(m.id.as_str()))
            .collect();
        assert_eq!(replicas.len(), 1, "{} has {replicas:#?}", m.addr);
        assert_ne!(
            host(&replicas[0].addr),
            host(&m.addr),
            "{} replicates {} on the same node",
            replicas[0].addr,
            m.addr
        );
    }
    assert!(table.iter().all(|n| !n.failed()), "{table:#?}");
}

#[test]
#[ignore = "starts six redis-server instances on loopback (run with --include-ignored)"]
fn a_redis_cluster_forms_and_a_reimaged_node_rejoins() {
    require_tools(&["/usr/bin/redis-server", "/usr/bin/redis-cli"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut ports = Vec::new();
    for _ in 0..6 {
        let p = cluster_port(&ports);
        ports.push(p);
    }
    let inv = inventory(&ports);
    let (ip1, ip2) = (format!("{NET}.1"), format!("{NET}.2"));
    let all: Vec<(String, u16)> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| (if i < 3 { ip1.clone() } else { ip2.clone() }, *p))
        .collect();
    let wait = Duration::from_secs(120);

    // 1. Both nodes boot at once; the second waits for the first to form the cluster.
    let n1 = node(tmp.path(), "n1", &inv, &ip1, &ports[..3]);
    let n2 = node(tmp.path(), "n2", &inv, &ip2, &ports[3..]);
    std::thread::scope(|s| {
        let second = s.spawn(|| n2.firstboot(&n2.options(wait)));
        let first = n1.firstboot(&n1.options(wait));
        let second = second.join().unwrap();
        let (first, second) = (first.expect("node 1 joins"), second.expect("node 2 joins"));
        let says = |st: &pigsty::agent::state::State| {
            st.steps
                .get("redis")
                .map(|s| s.detail.clone())
                .unwrap_or_default()
        };
        assert!(
            says(&first).contains("formed over 6 instances"),
            "{first:?}"
        );
        assert!(says(&second).contains("already members"), "{second:?}");
    });
    assert_healthy(&all);

    // 2. A key written through node 1 is read through node 2, and back.
    for i in 0..KEYS {
        assert_eq!(
            cli(
                &ip1,
                ports[i % 3],
                &["set", &format!("k{i}"), &format!("v{i}")]
            ),
            "OK"
        );
    }
    for i in 0..KEYS {
        assert_eq!(
            cli(&ip2, ports[3 + i % 3], &["get", &format!("k{i}")]),
            format!("v{i}")
        );
    }
    let before: Vec<_> = nodes(&ip1, ports[0])
        .into_iter()
        .filter(|n| host(&n.addr) == ip2)
        .collect();
    assert_eq!(before.len(), 3);
    // Node 2 serves slots, so its loss needs a failover before it can rejoin.
    assert!(
        before.iter().any(|n| n.is_master() && n.slots > 0),
        "{before:#?}"
    );
    let old_ids: Vec<String> = before.into_iter().map(|n| n.id).collect();

    // 3. Node 2 is reimaged: its instances die and come back empty, on the same
    //    addresses, from a fresh root, sooner than the cluster's failure detection
    //    (the old identities turn `noaddr`, not `fail`). Its agent has the gone
    //    primary's replica take over, forgets the old identities and rejoins every
    //    instance as a replica.
    drop(n2);
    let n2 = node(tmp.path(), "n2-reimaged", &inv, &ip2, &ports[3..]);
    let st = match n2.firstboot(&n2.options(wait)) {
        Ok(st) => st,
        Err(e) => {
            for (ip, port) in &all {
                eprintln!("--- {ip}:{port}\n{}", cli(ip, *port, &["cluster", "nodes"]));
            }
            panic!("reimaged node 2 rejoins: {e:#}");
        }
    };
    let detail = &st.steps["redis"].detail;
    assert_eq!(
        detail.matches("rejoined as a replica").count(),
        3,
        "{detail}"
    );
    assert_healthy(&all);
    let table = nodes(&ip1, ports[0]);
    for id in &old_ids {
        assert!(
            table.iter().all(|n| &n.id != id),
            "{id} not forgotten: {table:#?}"
        );
    }
    for (ip, port) in &all[3..] {
        let me = nodes(ip, *port)
            .into_iter()
            .find(|n| n.has("myself"))
            .unwrap();
        assert!(me.has("slave"), "{ip}:{port} came back as {me:?}");
    }

    // 4. Nothing lost: every key reads through the reimaged node, and each new replica
    //    holds its primary's keys.
    for i in 0..KEYS {
        assert_eq!(
            cli(&ip2, ports[3 + i % 3], &["get", &format!("k{i}")]),
            format!("v{i}")
        );
    }
    for (ip, port) in &all[3..] {
        let synced = (0..100).any(|_| {
            let repl = cli(ip, *port, &["info", "replication"]);
            let ok = repl.contains("master_link_status:up") && cli(ip, *port, &["dbsize"]) != "0";
            if !ok {
                std::thread::sleep(Duration::from_millis(100));
            }
            ok
        });
        assert!(
            synced,
            "{ip}:{port}: {}",
            cli(ip, *port, &["info", "replication"])
        );
    }
    let total: usize = table
        .iter()
        .filter(|n| n.is_master())
        .map(|m| {
            let (h, p) = m.addr.rsplit_once(':').unwrap();
            cli(h, p.parse().unwrap(), &["dbsize"])
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, KEYS);
}
