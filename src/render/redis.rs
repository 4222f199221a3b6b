//! REDIS context: one entry per instance (its config file, data directory and
//! upstream), and for sentinels the primaries they watch.
//!
//! Instances run as `pigsty-redis@<name>.service` (our own template unit: Debian's
//! `redis-server@.service` reads `/etc/redis/redis-%i.conf`, cannot start a
//! sentinel, and its `ProtectSystem=strict` leaves `/data/redis` read-only).

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::model::{Fleet, Node, RedisMode, RedisNode, RedisSentinelMonitor};
use crate::plan::node_json::{RedisInfo, RedisInstance, RedisMember};

/// Where instance data lives, one directory per instance (Pigsty's `redis_fs_main`
/// `/data` plus `redis/<name>`).
pub const DATA_ROOT: &str = "/data/redis";

/// The systemd unit that runs one instance.
pub fn unit_name(instance: &str) -> String {
    format!("pigsty-redis@{instance}.service")
}

/// Template context for redis files (`redis` in templates); null on other nodes.
pub fn context(_fleet: &Fleet, node: &Node) -> Value {
    let Some(r) = &node.redis else {
        return Value::Null;
    };
    let p = &r.params;
    let (save, invalid) = match save_rules(&p.redis_rdb_save) {
        Ok(rules) => (rules, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    json!({
        "cluster": r.cluster,
        "node": r.node,
        "name": r.name,
        "mode": crate::model::serde_plain(&p.redis_mode),
        "sentinel": p.redis_mode == RedisMode::Sentinel,
        "cluster_mode": p.redis_mode == RedisMode::Cluster,
        "password": (!p.redis_password.is_empty()).then_some(&p.redis_password),
        "bind": p.redis_bind_address.split_whitespace().collect::<Vec<_>>(),
        "save": save,
        "invalid": invalid,
        "instances": instances(r),
        "monitors": monitors(&p.redis_sentinel_monitor),
        // Sentinel accepts host names only when told to resolve them.
        "resolve_hostnames": p.redis_sentinel_monitor.iter().any(|m| m.host.parse::<Ipv4Addr>().is_err()),
    })
}

/// What the first-boot agent needs: each instance's unit and port, and in cluster mode
/// every instance of the cluster (to form it, or to rejoin it after a reimage).
pub fn agent(fleet: &Fleet, node: &Node) -> Option<RedisInfo> {
    let r = node.redis.as_ref()?;
    let members = if r.params.redis_mode == RedisMode::Cluster {
        cluster_members(fleet, &r.cluster)
    } else {
        Vec::new()
    };
    Some(RedisInfo {
        cluster: r.cluster.clone(),
        node: r.node,
        name: r.name.clone(),
        mode: r.params.redis_mode,
        instances: r
            .instances
            .iter()
            .map(|(port, inst)| RedisInstance {
                name: inst.name.clone(),
                port: *port,
                unit: unit_name(&inst.name),
            })
            .collect(),
        password: r.params.redis_password.clone(),
        members,
        replicas: r.params.redis_cluster_replicas,
    })
}

/// Every instance of a redis cluster, by `redis_node` and then port.
pub fn cluster_members(fleet: &Fleet, cluster: &str) -> Vec<RedisMember> {
    let mut nodes: Vec<(&Node, &RedisNode)> = fleet
        .nodes
        .iter()
        .filter_map(|n| n.redis.as_ref().map(|r| (n, r)))
        .filter(|(_, r)| r.cluster == cluster)
        .collect();
    nodes.sort_by_key(|(_, r)| r.node);
    nodes
        .into_iter()
        .flat_map(|(n, r)| {
            r.instances.iter().map(move |(port, inst)| RedisMember {
                name: inst.name.clone(),
                ip: n.ip.to_string(),
                port: *port,
            })
        })
        .collect()
}

fn instances(r: &RedisNode) -> Vec<Value> {
    r.instances
        .iter()
        .map(|(port, inst)| {
            let upstream = inst
                .replica_of
                .map(|(ip, p)| json!({ "host": ip.to_string(), "port": p }));
            json!({
                "name": inst.name,
                "port": port,
                "dir": format!("{DATA_ROOT}/{}", inst.name),
                "unit": unit_name(&inst.name),
                "replica_of": upstream,
            })
        })
        .collect()
}

/// Sentinel `monitor` entries; a monitored primary without a password gets no
/// `auth-pass` line.
fn monitors(list: &[RedisSentinelMonitor]) -> Vec<Value> {
    list.iter()
        .map(|m| {
            let password = m
                .password
                .as_ref()
                .map(|s| s.0.as_str())
                .filter(|s| !s.is_empty());
            json!({
                "name": m.name,
                "host": m.host,
                "port": m.port,
                "quorum": m.quorum,
                "password": password,
            })
        })
        .collect()
}

/// `redis_rdb_save` items (`'1200 1'`: seconds and changes) as number pairs, so a
/// typo is refused at render time instead of by redis at start.
pub fn save_rules(items: &[String]) -> Result<Vec<[u64; 2]>, String> {
    items
        .iter()
        .map(|item| {
            let nums: Vec<Option<u64>> = item.split_whitespace().map(|w| w.parse().ok()).collect();
            match nums.as_slice() {
                [Some(secs), Some(changes)] => Ok([*secs, *changes]),
                _ => Err(format!(
                    "redis_rdb_save item {item:?} is not `<seconds> <changes>` (e.g. '1200 1')"
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::load_str;

    const INVENTORY: &str = r#"
all:
  children:
    redis-ms:
      hosts: { 10.10.10.10: { redis_node: 1, redis_instances: { 6379: {}, 6380: { replica_of: '10.10.10.10 6379' } } } }
      vars: { redis_cluster: redis-ms, redis_password: 'redis.ms' }
    redis-meta:
      hosts: { 10.10.10.11: { redis_node: 1, redis_instances: { 26379: {} } } }
      vars:
        redis_cluster: redis-meta
        redis_mode: sentinel
        redis_sentinel_monitor:
          - { name: redis-ms, host: 10.10.10.10, port: 6379, password: redis.ms, quorum: 2 }
          - { name: other, host: redis.example, port: 6379 }
"#;

    fn ctx(ip: &str) -> Value {
        let loaded = load_str("test.yml", INVENTORY).unwrap();
        let fleet = &loaded.fleet;
        let node = fleet.nodes.iter().find(|n| n.ip.to_string() == ip).unwrap();
        context(fleet, node)
    }

    #[test]
    fn instances_carry_dir_unit_and_upstream() {
        let c = ctx("10.10.10.10");
        assert_eq!(c["mode"], "standalone");
        assert_eq!(c["password"], "redis.ms");
        let inst = c["instances"].as_array().unwrap();
        assert_eq!(inst[0]["name"], "redis-ms-1-6379");
        assert_eq!(inst[0]["dir"], "/data/redis/redis-ms-1-6379");
        assert_eq!(inst[0]["unit"], "pigsty-redis@redis-ms-1-6379.service");
        assert_eq!(inst[0]["replica_of"], Value::Null);
        assert_eq!(
            inst[1]["replica_of"],
            json!({ "host": "10.10.10.10", "port": 6379 })
        );
    }

    #[test]
    fn sentinel_monitors_default_quorum_and_resolve_names() {
        let c = ctx("10.10.10.11");
        assert_eq!(c["sentinel"], true);
        assert_eq!(c["password"], Value::Null);
        let m = c["monitors"].as_array().unwrap();
        assert_eq!(m[0]["quorum"], 2);
        assert_eq!(m[0]["password"], "redis.ms");
        assert_eq!(m[1]["quorum"], 1);
        assert_eq!(m[1]["password"], Value::Null);
        assert_eq!(c["resolve_hostnames"], true);
    }

    #[test]
    fn save_rules_are_number_pairs() {
        assert_eq!(
            save_rules(&["1200 1".into(), " 60  100 ".into()]).unwrap(),
            [[1200, 1], [60, 100]]
        );
        assert!(save_rules(&[]).unwrap().is_empty());
        for bad in ["1200", "1200 1 5", "x 1", "-1 1", ""] {
            assert!(save_rules(&[bad.into()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_save_rule_fails_the_render() {
        let bad = INVENTORY.replace("redis_password: 'redis.ms'", "redis_rdb_save: ['hourly']");
        let loaded = load_str("test.yml", &bad).unwrap();
        let node = &loaded.fleet.nodes[0];
        let err = crate::compile::compile(&loaded.fleet, node).unwrap_err();
        assert!(err.reason.contains("redis_rdb_save"), "{err}");
    }

    #[test]
    fn zero_quorum_is_an_inventory_error() {
        let bad = INVENTORY.replace("quorum: 2", "quorum: 0");
        assert!(load_str("test.yml", &bad).is_err());
    }
}
