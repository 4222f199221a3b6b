//! The template context of one node: the typed node itself (`node`, every parameter
//! of its modules), derived values that need the whole fleet (peers, member lists,
//! hosts entries), and `flags` that gate optional files. Module-specific parts live
//! in their own files (`pgsql`, `minio`, `redis`, `infra`).

use serde::Serialize;
use serde_json::{Value, json};

use super::{RenderError, RenderedFile};
use crate::compile::JoinStep;
use crate::model::{Fleet, Node};

use super::{infra, minio, pgsql, redis};

/// The whole context as JSON (what templates see). Fails when a module part holds a
/// value its file cannot carry (see `pgsql::PgsqlError`).
pub fn build(fleet: &Fleet, node: &Node, join: &[JoinStep]) -> Result<Value, RenderError> {
    let pg = pgsql::context(fleet, node).map_err(|e| RenderError {
        node: node.nodename.clone(),
        file: e.file.to_string(),
        reason: e.reason,
    })?;
    // Only the file's name: the node's files (and so its image) must not depend on
    // where the inventory sits on the build machine.
    let inventory = std::path::Path::new(&fleet.source).file_name().map_or_else(
        || fleet.source.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(json!({
        "pigsty": { "version": env!("CARGO_PKG_VERSION"), "inventory": inventory },
        "ip": node.ip.to_string(),
        "nodename": node.nodename,
        "node": node,
        "flags": flags(node),
        "node_tune_sysctl": tune_sysctl(node.node.node_tune),
        "hosts": etc_hosts(fleet, node),
        "etcd": etcd(fleet, node),
        "pg": pg,
        "minio": minio::context(fleet, node),
        "redis": redis::context(fleet, node),
        "infra": infra::context(fleet, node),
        "join": join,
    }))
}

/// Kernel settings per `node_tune` profile (after Pigsty's tuned profiles).
fn tune_sysctl(tune: crate::model::NodeTune) -> Value {
    use crate::model::NodeTune;
    let mut m = serde_json::Map::new();
    let mut set = |k: &str, v: &str| {
        m.insert(k.to_string(), Value::String(v.to_string()));
    };
    set("fs.file-max", "16777216");
    set("net.core.somaxconn", "65535");
    set("net.ipv4.tcp_max_syn_backlog", "8192");
    set("net.ipv4.ip_local_port_range", "10000 65535");
    set("net.ipv4.tcp_keepalive_time", "60");
    set("kernel.numa_balancing", "0");
    set("vm.overcommit_memory", "0");
    match tune {
        NodeTune::Oltp => {
            set("vm.swappiness", "10");
            set("vm.dirty_background_ratio", "10");
            set("vm.dirty_ratio", "40");
        }
        NodeTune::Olap => {
            set("vm.swappiness", "10");
            set("vm.dirty_background_ratio", "20");
            set("vm.dirty_ratio", "80");
        }
        NodeTune::Crit => {
            set("vm.swappiness", "0");
            set("vm.dirty_background_ratio", "5");
            set("vm.dirty_ratio", "20");
            set("vm.overcommit_memory", "2");
            set("vm.overcommit_ratio", "100");
        }
        NodeTune::Tiny => {
            set("vm.swappiness", "20");
        }
    }
    Value::Object(m)
}

/// Booleans that gate optional files (`when:` in a module's meta.yml).
fn flags(node: &Node) -> Value {
    let n = &node.node;
    let pg = node.pg.as_ref().map(|p| &p.params);
    let on = |f: fn(&crate::model::PgParams) -> bool| pg.is_some_and(f);
    json!({
        "node_exporter": n.node_exporter_enabled.0,
        "node_admin": n.node_admin_enabled.0,
        "ntp": n.node_ntp_enabled.0,
        "timezone": !n.node_timezone.is_empty(),
        "primary": node.pg.as_ref().is_some_and(|p| p.role == crate::model::PgRole::Primary),
        "patroni": on(|p| p.patroni_enabled.0),
        "pgbouncer": on(|p| p.pgbouncer_enabled.0),
        "haproxy": on(|p| p.haproxy_enabled.0),
        "pgbackrest": on(|p| p.pgbackrest_enabled.0),
    })
}

#[derive(Serialize)]
struct HostsEntry {
    ip: String,
    names: Vec<String>,
}

/// `/etc/hosts` entries besides localhost: the node itself, Pigsty's default and
/// extra entries (`"IP name..."` strings), and the names of every MinIO member.
fn etc_hosts(fleet: &Fleet, node: &Node) -> Vec<HostsEntry> {
    let mut out = vec![HostsEntry {
        ip: node.ip.to_string(),
        names: vec![node.nodename.clone()],
    }];
    let n = &node.node;
    for line in n.node_default_etc_hosts.iter().chain(&n.node_etc_hosts) {
        let mut parts = line.split_whitespace();
        if let Some(ip) = parts.next() {
            let names: Vec<String> = parts.map(str::to_string).collect();
            if !names.is_empty() {
                out.push(HostsEntry {
                    ip: ip.to_string(),
                    names,
                });
            }
        }
    }
    for m in fleet
        .nodes
        .iter()
        .filter_map(|x| x.minio.as_ref().map(|m| (x, m)))
    {
        let (member, minio) = m;
        out.push(HostsEntry {
            ip: member.ip.to_string(),
            names: vec![minio.params.minio_node.clone()],
        });
    }
    out
}

/// The etcd cluster this node is a member or client of (every PGSQL node is a client
/// of cluster `etcd`).
fn etcd(fleet: &Fleet, node: &Node) -> Value {
    let cluster = node.etcd.as_ref().map_or("etcd", |e| e.cluster.as_str());
    let members = fleet.etcd_members(cluster);
    if members.is_empty() || (node.etcd.is_none() && node.pg.is_none()) {
        return Value::Null;
    }
    let list: Vec<Value> = members
        .iter()
        .filter_map(|m| {
            let e = m.etcd.as_ref()?;
            Some(json!({
                "name": e.name,
                "seq": e.seq,
                "ip": m.ip.to_string(),
                "peer_url": format!("http://{}:{}", m.ip, e.params.etcd_peer_port),
                "client_url": format!("http://{}:{}", m.ip, e.params.etcd_port),
                "endpoint": format!("{}:{}", m.ip, e.params.etcd_port),
            }))
        })
        .collect();
    let initial: Vec<String> = list
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                m["name"].as_str().unwrap_or(""),
                m["peer_url"].as_str().unwrap_or("")
            )
        })
        .collect();
    json!({
        "cluster": cluster,
        "member": node.etcd,
        "members": list,
        "initial_cluster": initial.join(","),
        "endpoints": list.iter().map(|m| m["endpoint"].clone()).collect::<Vec<_>>(),
        "client_urls": list.iter().map(|m| m["client_url"].clone()).collect::<Vec<_>>(),
    })
}

/// `/etc/pigsty/node.json`: the agent's input. It holds this node's own secrets (MinIO
/// root keys to create buckets, Patroni REST credentials), so it is 0600 root.
pub fn node_json(
    ctx: &tera::Context,
    fleet: &Fleet,
    node: &Node,
    join: &[JoinStep],
) -> RenderedFile {
    let get = |k: &str| ctx.get(k).cloned().unwrap_or(Value::Null);
    let doc = json!({
        "schema": 1,
        "pigsty": get("pigsty"),
        "node": {
            "ip": get("ip"),
            "nodename": get("nodename"),
            "node_cluster": node.node_cluster,
            "modules": node.modules,
        },
        "join": join,
        "etcd": get("etcd"),
        "pg": pgsql::agent(fleet, node),
        "minio": minio::agent(fleet, node),
        "redis": get("redis"),
    });
    let mut content = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    content.push(b'\n');
    RenderedFile {
        path: "/etc/pigsty/node.json".into(),
        mode: 0o600,
        owner: "root:root".into(),
        content,
    }
}
