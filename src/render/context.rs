//! The template context of one node: the typed node itself (`node`, every parameter
//! of its modules), derived values that need the whole fleet (peers, member lists,
//! hosts entries), and `flags` that gate optional files. Module-specific parts live
//! in their own files (`pgsql`, `minio`, `redis`, `infra`).

use serde::Serialize;
use serde_json::{Value, json};

use super::{RenderError, RenderedFile};
use crate::model::{Fleet, Node, NodeTune};
use crate::plan::JoinStep;
use crate::plan::node_json::{
    EtcdAccess, EtcdInfo, EtcdMember, EtcdMemberParams, EtcdPeer, EtcdRbac, EtcdUser, NODE_JSON,
    NODE_JSON_SCHEMA, NodeInfo, NodeJson, PigstyInfo,
};

use super::{haproxy, infra, minio, pgsql, redis};

/// The whole context as JSON (what templates see). Fails when a module part holds a
/// value its file cannot carry (see `pgsql::PgsqlError`).
pub fn build(fleet: &Fleet, node: &Node, join: &[JoinStep]) -> Result<Value, RenderError> {
    let pg = pgsql::context(fleet, node).map_err(|e| RenderError {
        node: node.nodename.clone(),
        file: e.file.to_string(),
        reason: e.reason,
    })?;
    let haproxy =
        haproxy::context(node, &pg["haproxy"]["services"]).map_err(|reason| RenderError {
            node: node.nodename.clone(),
            file: haproxy::HAPROXY_CFG.into(),
            reason,
        })?;
    let vip = node_vip(fleet, node).map_err(|reason| RenderError {
        node: node.nodename.clone(),
        file: "/etc/keepalived/keepalived.conf".into(),
        reason,
    })?;
    // The parts that are JSON values already are moved in: `json!` would serialize
    // each again into a copy (a tenth of `plan --all` went to copying PGSQL's).
    let mut ctx = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        ctx.insert(key.to_string(), value);
    };
    put("vip", vip);
    put("pigsty", json!(pigsty_info(fleet)));
    put("ip", Value::String(node.ip.to_string()));
    put("nodename", Value::String(node.nodename.clone()));
    put("node", json!(node));
    put("flags", flags(fleet, node));
    put("tls", json!(node.tls.as_deref()));
    put("cron", cron(node));
    put("node_tune_sysctl", tune_sysctl(&node.node));
    put("hosts", json!(etc_hosts(fleet, node)));
    put("etcd", json!(etcd(fleet, node)));
    put("pg", pg);
    put("haproxy", haproxy);
    put("minio", minio::context(fleet, node));
    put("redis", redis::context(fleet, node));
    put("infra", infra::context(fleet, node));
    put("join", json!(join));
    Ok(Value::Object(ctx))
}

/// Which pigsty renders, from which inventory. Only the inventory's file name: the
/// node's files (and so its image) must not depend on where it sits on the build
/// machine.
fn pigsty_info(fleet: &Fleet) -> PigstyInfo {
    let inventory = std::path::Path::new(&fleet.source).file_name().map_or_else(
        || fleet.source.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    PigstyInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        inventory,
    }
}

/// The kernel settings of the node's `node_tune` profile: Pigsty's tuned profile
/// `[sysctl]` values and the overcommit policy. The shared-memory limits follow the
/// machine's memory: `pigsty agent tune` sets them at each boot.
fn tune_sysctl(n: &crate::model::NodeParams) -> Value {
    let mut m = serde_json::Map::new();
    let tuned = tuned_sysctl(n.node_tune)
        .iter()
        .map(|(k, v)| (*k, (*v).to_string()));
    for (k, v) in tuned.chain(overcommit(n.node_tune, n.node_overcommit_ratio)) {
        m.insert(k.to_string(), Value::String(v));
    }
    Value::Object(m)
}

/// `vm.overcommit_*` of a tuned profile: strict accounting at `node_overcommit_ratio`
/// when it is above 0, else the profile's own choice (olap leaves the kernel's).
fn overcommit(tune: NodeTune, ratio: u32) -> Vec<(&'static str, String)> {
    let (memory, ratio) = match (tune, ratio) {
        (NodeTune::None, _) | (NodeTune::Olap, 0) => return vec![],
        (_, r) if r > 0 => (2, r),
        (NodeTune::Tiny, _) => (0, 200),
        _ => (0, 100),
    };
    vec![
        ("vm.overcommit_memory", memory.to_string()),
        ("vm.overcommit_ratio", ratio.to_string()),
    ]
}

/// Pigsty 4.5's `roles/node/templates/tuned-<profile>.conf`, `[sysctl]` section, minus
/// the memory-derived shared-memory limits (sized at boot: `plan::sizing::kernel`) and
/// the overcommit policy (from `node_overcommit_ratio`: [`overcommit`]).
pub fn tuned_sysctl(tune: NodeTune) -> &'static [(&'static str, &'static str)] {
    match tune {
        NodeTune::Oltp => &[
            ("fs.aio-max-nr", "1048576"),
            ("fs.file-max", "16777216"),
            ("fs.nr_open", "8388608"),
            ("kernel.msgmax", "65536"),
            ("kernel.msgmnb", "65536"),
            ("kernel.msgmni", "32768"),
            ("kernel.numa_balancing", "0"),
            ("kernel.pid_max", "131072"),
            ("kernel.sched_autogroup_enabled", "0"),
            ("kernel.sem", "4096 524288 2048 8192"),
            ("kernel.shmmni", "8192"),
            ("net.core.netdev_max_backlog", "8192"),
            ("net.core.rmem_default", "262144"),
            ("net.core.rmem_max", "4194304"),
            ("net.core.somaxconn", "65535"),
            ("net.core.wmem_default", "262144"),
            ("net.core.wmem_max", "4194304"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "10000 64999"),
            ("net.ipv4.ip_nonlocal_bind", "1"),
            ("net.ipv4.ping_group_range", "0 65535"),
            ("net.ipv4.tcp_fin_timeout", "15"),
            ("net.ipv4.tcp_keepalive_intvl", "20"),
            ("net.ipv4.tcp_keepalive_probes", "3"),
            ("net.ipv4.tcp_keepalive_time", "60"),
            ("net.ipv4.tcp_max_syn_backlog", "8192"),
            ("net.ipv4.tcp_max_tw_buckets", "262144"),
            ("net.ipv4.tcp_rmem", "4096 87380 16777216"),
            ("net.ipv4.tcp_syn_retries", "3"),
            ("net.ipv4.tcp_synack_retries", "3"),
            ("net.ipv4.tcp_syncookies", "0"),
            ("net.ipv4.tcp_timestamps", "1"),
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.ipv4.tcp_wmem", "4096 16384 16777216"),
            ("net.ipv4.udp_mem", "3145728 4194304 16777216"),
            ("net.netfilter.nf_conntrack_max", "524288"),
            ("vm.dirty_background_ratio", "3"),
            ("vm.dirty_expire_centisecs", "500"),
            ("vm.dirty_ratio", "15"),
            ("vm.dirty_writeback_centisecs", "100"),
            ("vm.mmap_min_addr", "65536"),
            ("vm.swappiness", "1"),
            ("vm.zone_reclaim_mode", "0"),
        ],
        NodeTune::Olap => &[
            ("fs.aio-max-nr", "1048576"),
            ("fs.file-max", "134217728"),
            ("fs.nr_open", "8388608"),
            ("kernel.msgmax", "65536"),
            ("kernel.msgmnb", "65536"),
            ("kernel.msgmni", "32768"),
            ("kernel.numa_balancing", "0"),
            ("kernel.pid_max", "131072"),
            ("kernel.sched_autogroup_enabled", "0"),
            ("kernel.sem", "4096 524288 2048 8192"),
            ("kernel.shmmni", "8192"),
            ("net.core.netdev_max_backlog", "8192"),
            ("net.core.rmem_default", "262144"),
            ("net.core.rmem_max", "16777216"),
            ("net.core.somaxconn", "65535"),
            ("net.core.wmem_default", "262144"),
            ("net.core.wmem_max", "16777216"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "10000 64999"),
            ("net.ipv4.ip_nonlocal_bind", "1"),
            ("net.ipv4.ping_group_range", "0 65535"),
            ("net.ipv4.tcp_fin_timeout", "60"),
            ("net.ipv4.tcp_keepalive_intvl", "60"),
            ("net.ipv4.tcp_keepalive_probes", "5"),
            ("net.ipv4.tcp_keepalive_time", "300"),
            ("net.ipv4.tcp_max_syn_backlog", "8192"),
            ("net.ipv4.tcp_max_tw_buckets", "262144"),
            ("net.ipv4.tcp_rmem", "4096 87380 33554432"),
            ("net.ipv4.tcp_syn_retries", "3"),
            ("net.ipv4.tcp_synack_retries", "3"),
            ("net.ipv4.tcp_syncookies", "1"),
            ("net.ipv4.tcp_timestamps", "1"),
            ("net.ipv4.tcp_tw_reuse", "0"),
            ("net.ipv4.tcp_wmem", "4096 16384 33554432"),
            ("net.ipv4.udp_mem", "3145728 4194304 33554432"),
            ("net.netfilter.nf_conntrack_max", "524288"),
            ("vm.dirty_background_ratio", "10"),
            ("vm.dirty_ratio", "80"),
            ("vm.mmap_min_addr", "65536"),
            ("vm.swappiness", "1"),
            ("vm.zone_reclaim_mode", "0"),
        ],
        NodeTune::Crit => &[
            ("fs.aio-max-nr", "1048576"),
            ("fs.file-max", "16777216"),
            ("fs.nr_open", "8388608"),
            ("kernel.msgmax", "65536"),
            ("kernel.msgmnb", "65536"),
            ("kernel.msgmni", "32768"),
            ("kernel.numa_balancing", "0"),
            ("kernel.pid_max", "131072"),
            ("kernel.sched_autogroup_enabled", "0"),
            ("kernel.sem", "4096 524288 2048 8192"),
            ("kernel.shmmni", "8192"),
            ("net.core.netdev_max_backlog", "8192"),
            ("net.core.rmem_default", "262144"),
            ("net.core.rmem_max", "4194304"),
            ("net.core.somaxconn", "65535"),
            ("net.core.wmem_default", "262144"),
            ("net.core.wmem_max", "4194304"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "10000 64999"),
            ("net.ipv4.ip_nonlocal_bind", "1"),
            ("net.ipv4.ping_group_range", "0 65535"),
            ("net.ipv4.tcp_fin_timeout", "30"),
            ("net.ipv4.tcp_keepalive_intvl", "20"),
            ("net.ipv4.tcp_keepalive_probes", "3"),
            ("net.ipv4.tcp_keepalive_time", "60"),
            ("net.ipv4.tcp_max_syn_backlog", "8192"),
            ("net.ipv4.tcp_max_tw_buckets", "262144"),
            ("net.ipv4.tcp_rmem", "4096 87380 16777216"),
            ("net.ipv4.tcp_syn_retries", "2"),
            ("net.ipv4.tcp_synack_retries", "2"),
            ("net.ipv4.tcp_syncookies", "1"),
            ("net.ipv4.tcp_timestamps", "1"),
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.ipv4.tcp_wmem", "4096 16384 16777216"),
            ("net.ipv4.udp_mem", "3145728 4194304 16777216"),
            ("net.netfilter.nf_conntrack_max", "524288"),
            ("vm.dirty_background_ratio", "1"),
            ("vm.dirty_expire_centisecs", "100"),
            ("vm.dirty_ratio", "5"),
            ("vm.dirty_writeback_centisecs", "100"),
            ("vm.mmap_min_addr", "65536"),
            ("vm.swappiness", "1"),
            ("vm.zone_reclaim_mode", "0"),
        ],
        NodeTune::Tiny => &[
            ("fs.aio-max-nr", "1048576"),
            ("fs.file-max", "16777216"),
            ("fs.nr_open", "8388608"),
            ("kernel.numa_balancing", "0"),
            ("kernel.sched_autogroup_enabled", "0"),
            ("kernel.shmmni", "8192"),
            ("net.core.netdev_max_backlog", "2048"),
            ("net.core.rmem_default", "262144"),
            ("net.core.rmem_max", "4194304"),
            ("net.core.somaxconn", "8192"),
            ("net.core.wmem_default", "262144"),
            ("net.core.wmem_max", "4194304"),
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "10000 64999"),
            ("net.ipv4.ip_nonlocal_bind", "1"),
            ("net.ipv4.ping_group_range", "0 65535"),
            ("net.ipv4.tcp_fin_timeout", "30"),
            ("net.ipv4.tcp_keepalive_intvl", "20"),
            ("net.ipv4.tcp_keepalive_probes", "3"),
            ("net.ipv4.tcp_keepalive_time", "60"),
            ("net.ipv4.tcp_max_syn_backlog", "4096"),
            ("net.ipv4.tcp_max_tw_buckets", "262144"),
            ("net.ipv4.tcp_rmem", "4096 87380 16777216"),
            ("net.ipv4.tcp_syn_retries", "3"),
            ("net.ipv4.tcp_synack_retries", "3"),
            ("net.ipv4.tcp_syncookies", "0"),
            ("net.ipv4.tcp_timestamps", "1"),
            ("net.ipv4.tcp_tw_reuse", "1"),
            ("net.ipv4.tcp_wmem", "4096 16384 16777216"),
            ("net.ipv4.udp_mem", "3145728 4194304 16777216"),
            ("net.netfilter.nf_conntrack_max", "65536"),
            ("vm.dirty_background_ratio", "5"),
            ("vm.dirty_ratio", "30"),
            ("vm.mmap_min_addr", "65536"),
            ("vm.swappiness", "10"),
            ("vm.zone_reclaim_mode", "0"),
        ],
        NodeTune::None => &[],
    }
}

/// The node VIP (`vip_enabled`): keepalived's VRRP instance for the node cluster,
/// over unicast to the cluster's other members that run it. Null when disabled.
fn node_vip(fleet: &Fleet, node: &Node) -> Result<Value, String> {
    let n = &node.node;
    if !n.vip_enabled.0 {
        return Ok(Value::Null);
    }
    // Validation made both present with vip_enabled.
    let (Some(address), Some(vrid)) = (n.vip_address, n.vip_vrid) else {
        return Err("vip_enabled needs vip_address and vip_vrid".into());
    };
    let word = |what: &str, s: &str| {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || !s.chars().all(ok) {
            return Err(format!(
                "{what} `{s}` is not a keepalived word (letters, digits, `.`, `_`, `-`)"
            ));
        }
        Ok(())
    };
    word("node_cluster", &node.node_cluster)?;
    let peers: Vec<String> = fleet
        .nodes
        .iter()
        .filter(|m| m.ip != node.ip && m.node_cluster == node.node_cluster && m.node.vip_enabled.0)
        .map(|m| m.ip.to_string())
        .collect();
    let pass = if n.vip_auth_pass.is_empty() {
        format!("{}-{vrid}", node.node_cluster)
    } else {
        n.vip_auth_pass.clone()
    };
    let master = n.vip_role == crate::model::VipRole::Master;
    Ok(json!({
        "cluster": node.node_cluster,
        "address": address.to_string(),
        "vrid": vrid,
        "state": if master { "MASTER" } else { "BACKUP" },
        "priority": if master { 128 } else { 100 },
        "preempt": n.vip_preempt.0,
        "interface": n.vip_interface.trim(),
        "node_ip": node.ip.to_string(),
        "peers": peers,
        "auth_pass": pass,
    }))
}

/// Booleans that gate optional files (`when:` in a module's meta.yml).
fn flags(fleet: &Fleet, node: &Node) -> Value {
    let n = &node.node;
    let pg = node.pg.as_ref().map(|p| &p.params);
    let on = |f: fn(&crate::model::PgParams) -> bool| pg.is_some_and(f);
    json!({
        "node_exporter": n.node_exporter_enabled.0,
        "node_admin": n.node_admin_enabled.0,
        "ntp": n.node_ntp_enabled.0,
        "timezone": !n.node_timezone.is_empty(),
        "resolv": n.node_dns_method != crate::model::NodeDnsMethod::None,
        "primary": node.pg.as_ref().is_some_and(|p| p.role == crate::model::PgRole::Primary),
        "sql": crate::render::applies_sql(fleet, node),
        "patroni": on(|p| p.patroni_enabled.0),
        "pgbouncer": on(|p| p.pgbouncer_enabled.0),
        "pgbouncer_exporter": node.pgbouncer_exporter(),
        "blackbox": node.infra.as_ref().is_some_and(|i| i.params.blackbox_enabled.0),
        "grafana": node.grafana(),
        "tls": node.tls.is_some(),
        "minio_https": node.minio_https(),
        "pushgateway": node.infra.as_ref().is_some_and(|i| i.params.pushgateway_enabled.0),
        "log_receiver": node.log_receiver().is_some() && !node.victoria_logs(),
        "vlogs": node.victoria_logs(),
        "log_upload": !fleet.log_receivers(node).is_empty(),
        "haproxy": node.haproxy(),
        "pgbackrest": on(|p| p.pgbackrest_enabled.0),
        "pg_vip": on(|p| p.pg_vip_enabled.0),
        "crontab": !n.node_crontab.is_empty() && n.node_crontab_overwrite.0,
        "cron_node": !n.node_crontab.is_empty() && !n.node_crontab_overwrite.0,
        "cron_pgsql": on(|p| !p.pg_crontab.is_empty()),
        "node_vip": n.vip_enabled.0,
        "redis_exporter": node.redis.as_ref().is_some_and(|r| r.params.redis_exporter_enabled.0),
    })
}

/// The cron jobs of the node: `node_crontab` lines as written (they name their
/// user), and `pg_crontab` lines run as the dbsu. The inventory checked each line.
fn cron(node: &Node) -> Value {
    let pg: Vec<String> = node
        .pg
        .as_ref()
        .map(|pg| {
            pg.params
                .pg_crontab
                .iter()
                .filter_map(|l| crate::model::CronJob::parse(l, false).ok())
                .map(|j| j.line_as(&pg.params.pg_dbsu))
                .collect()
        })
        .unwrap_or_default();
    json!({ "node": node.node.node_crontab, "pgsql": pg })
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
/// of cluster `etcd`): the same part for templates and node.json.
fn etcd(fleet: &Fleet, node: &Node) -> Option<EtcdInfo> {
    let cluster = node.etcd.as_ref().map_or("etcd", |e| e.cluster.as_str());
    let members = fleet.etcd_members(cluster);
    if members.is_empty() || (node.etcd.is_none() && node.pg.is_none()) {
        return None;
    }
    let scheme = if node.tls.is_some() { "https" } else { "http" };
    let peers: Vec<(EtcdPeer, String)> = members
        .iter()
        .filter_map(|m| {
            let e = m.etcd.as_ref()?;
            let peer = EtcdPeer {
                name: e.name.clone(),
                seq: e.seq,
                ip: m.ip.to_string(),
                peer_url: format!("{scheme}://{}:{}", m.ip, e.params.etcd_peer_port),
                client_url: format!("{scheme}://{}:{}", m.ip, e.params.etcd_port),
            };
            Some((peer, format!("{}:{}", m.ip, e.params.etcd_port)))
        })
        .collect();
    let initial: Vec<String> = peers
        .iter()
        .map(|(p, _)| format!("{}={}", p.name, p.peer_url))
        .collect();
    Some(EtcdInfo {
        cluster: cluster.to_string(),
        member: node.etcd.as_ref().map(|e| EtcdMember {
            name: e.name.clone(),
            seq: e.seq,
            params: EtcdMemberParams {
                etcd_data: e.params.etcd_data.clone(),
                etcd_port: e.params.etcd_port,
                etcd_peer_port: e.params.etcd_peer_port,
            },
        }),
        initial_cluster: initial.join(","),
        endpoints: peers.iter().map(|(_, e)| e.clone()).collect(),
        client_urls: peers.iter().map(|(p, _)| p.client_url.clone()).collect(),
        members: peers.into_iter().map(|(p, _)| p).collect(),
        access: node
            .tls
            .is_some()
            .then(|| etcd_access(fleet, node, cluster))
            .flatten(),
    })
}

/// Where a node's etcd certificate pair is: etcd's own on a member, else PostgreSQL's.
pub fn etcd_pair(node: &Node) -> (&'static str, &'static str) {
    if node.etcd.is_some() {
        (ETCD_CERT, ETCD_KEY)
    } else {
        (
            crate::render::pgsql::conf::SERVER_CERT,
            crate::render::pgsql::conf::SERVER_KEY,
        )
    }
}

/// etcd's certificate pair and CA on a member (Pigsty's paths), owned by etcd.
pub const ETCD_CERT: &str = "/etc/etcd/server.crt";
pub const ETCD_KEY: &str = "/etc/etcd/server.key";
pub const ETCD_CA: &str = "/etc/etcd/ca.crt";
/// PostgreSQL's pair (also Patroni's, pgbouncer's and the agent's on a node without
/// etcd), where Pigsty puts it.
pub use crate::render::pgsql::conf::{SERVER_CERT as PG_CERT, SERVER_KEY as PG_KEY};
/// The fleet CA on every node.
pub const NODE_CA: &str = "/etc/pki/ca.crt";

/// The root password of etcd cluster `cluster` (its first member's).
fn etcd_root_password<'a>(fleet: &'a Fleet, cluster: &str) -> Option<&'a str> {
    fleet
        .etcd_members(cluster)
        .first()
        .and_then(|m| m.etcd.as_ref())
        .map(|e| e.params.etcd_root_password.as_str())
}

/// The etcd user of a PostgreSQL cluster and its password: `pg_etcd_password`, else
/// one derived from the etcd root password (HMAC-SHA256), so that a node holds only
/// its own cluster's credential and no guessable one. Pigsty names the user after the
/// cluster, as here.
pub fn pg_etcd_user(
    fleet: &Fleet,
    pg: &crate::model::PgInstance,
    etcd_cluster: &str,
) -> (String, String) {
    use hmac::{Hmac, KeyInit, Mac};
    let user = pg.cluster.clone();
    if !pg.params.pg_etcd_password.is_empty() {
        return (user, pg.params.pg_etcd_password.clone());
    }
    let root = etcd_root_password(fleet, etcd_cluster).unwrap_or_default();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(root.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(b"pigsty etcd user\0");
    mac.update(user.as_bytes());
    (user, hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// How the node's agent reaches its etcd: root on a member (it manages membership
/// and RBAC), its PostgreSQL cluster's user elsewhere.
fn etcd_access(fleet: &Fleet, node: &Node, cluster: &str) -> Option<EtcdAccess> {
    let (cert, key) = etcd_pair(node);
    let (user, password, rbac) = match (&node.etcd, &node.pg) {
        (Some(e), _) => {
            let mut users = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for n in &fleet.nodes {
                let Some(pg) = &n.pg else { continue };
                let own = n.etcd.as_ref().map_or("etcd", |e| e.cluster.as_str());
                if own != cluster || !seen.insert(pg.cluster.clone()) {
                    continue;
                }
                let (name, password) = pg_etcd_user(fleet, pg, cluster);
                let keys = fleet
                    .nodes
                    .iter()
                    .filter(|m| m.pg.as_ref().is_some_and(|q| q.cluster == pg.cluster))
                    .map(|m| format!("{}{}", crate::agent::NODES_PREFIX, m.nodename))
                    .collect();
                users.push(EtcdUser {
                    name,
                    password,
                    prefixes: vec![format!("{}/{}/", pg.params.pg_namespace, pg.cluster)],
                    keys,
                });
            }
            let root = e.params.etcd_root_password.clone();
            let rbac = EtcdRbac {
                root_password: root.clone(),
                users,
            };
            ("root".to_string(), root, Some(rbac))
        }
        (None, Some(pg)) => {
            let (u, p) = pg_etcd_user(fleet, pg, cluster);
            (u, p, None)
        }
        (None, None) => return None,
    };
    Some(EtcdAccess {
        ca: NODE_CA.into(),
        cert: cert.into(),
        key: key.into(),
        user,
        password,
        rbac,
    })
}

/// `/etc/pigsty/node.json`: the agent's input. It holds this node's own secrets (MinIO
/// root keys to create buckets, its etcd user), so it is 0600 root.
pub fn node_json(fleet: &Fleet, node: &Node, join: &[JoinStep]) -> NodeJson {
    NodeJson {
        schema: NODE_JSON_SCHEMA,
        pigsty: pigsty_info(fleet),
        node: NodeInfo {
            ip: node.ip.to_string(),
            nodename: node.nodename.clone(),
            node_cluster: node.node_cluster.clone(),
            modules: node.modules.iter().copied().collect(),
            tune: node.node.node_tune,
            haproxy_ports: haproxy::ports(node),
        },
        join: join.to_vec(),
        etcd: etcd(fleet, node),
        pg: pgsql::agent(fleet, node),
        minio: minio::agent(fleet, node),
        redis: redis::agent(fleet, node),
    }
}

/// node.json as the file the image carries.
pub fn node_json_file(doc: &NodeJson) -> RenderedFile {
    RenderedFile {
        path: format!("/{NODE_JSON}"),
        mode: 0o600,
        owner: "root:root".into(),
        content: doc.to_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Source, load};

    /// Every node of the built-in inventories: the node.json written into its overlay
    /// reads back, through the agent's reader, as exactly the document rendered.
    #[test]
    fn node_json_round_trips_through_the_agent_reader() {
        let mut checked = 0;
        for inv in ["pigsty", "sandbox", "lab"] {
            let path = format!("{}/inventory/{inv}.yml", env!("CARGO_MANIFEST_DIR"));
            let fleet = load(&Source::File(path.into())).unwrap().fleet;
            for node in &fleet.nodes {
                let compiled = crate::compile::compile(&fleet, node).unwrap();
                let written = node_json(&fleet, node, &compiled.plan.join);
                let file = compiled
                    .files
                    .iter()
                    .find(|f| f.path == format!("/{NODE_JSON}"))
                    .expect("every node carries node.json");
                assert_eq!(file.mode, 0o600);
                let read = NodeJson::parse(&file.content, &file.path)
                    .unwrap_or_else(|e| panic!("{inv}/{}: {e:#}", node.nodename));
                assert_eq!(read, written, "{inv}/{}", node.nodename);
                assert_eq!(read.schema, NODE_JSON_SCHEMA);
                assert_eq!(read.node.nodename, node.nodename);
                assert_eq!(read.pg.is_some(), node.pg.is_some());
                assert_eq!(read.minio.is_some(), node.minio.is_some());
                assert_eq!(read.redis.is_some(), node.redis.is_some());
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} node(s) checked");
    }
}
