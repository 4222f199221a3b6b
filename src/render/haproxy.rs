//! The node's haproxy (`haproxy_enabled`, a NODE feature in Pigsty): its admin page
//! and Prometheus metrics on `haproxy_exporter_port`, the PostgreSQL services of a
//! PGSQL node's cluster (built in `pgsql/haproxy.rs`), and the node's own
//! `haproxy_services` (a MinIO load balancer, say), each a `listen` section after
//! Pigsty's `service.j2`. One `/etc/haproxy/haproxy.cfg`, the file Debian's unit reads.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::pgsql::haproxy::{plain, quote_word};
use crate::model::{HaproxyService, Node};

/// Where it is written.
pub const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";

/// Pigsty's `default-server` when a `haproxy_services` item gives none.
const DEFAULT_SERVER: &str = "inter 3s fastinter 1s downinter 5s rise 3 fall 3 on-marked-down shutdown-sessions slowstart 30s maxconn 3000 maxqueue 128 weight 100";

/// The `haproxy` template context; null on a node without haproxy. `pg_services`
/// are the PGSQL context's (`pg.haproxy.services`), null on other nodes.
pub fn context(node: &Node, pg_services: &Value) -> Result<Value, String> {
    if !node.haproxy() {
        return Ok(Value::Null);
    }
    let p = &node.node;
    let user = quote_word(&p.haproxy_admin_username)
        .map_err(|e| format!("haproxy_admin_username: {e}"))?;
    let password = quote_word(&p.haproxy_admin_password)
        .map_err(|e| format!("haproxy_admin_password: {e}"))?;
    let nodename = plain("nodename", &node.nodename)?;
    let timeout =
        |what: &str, v: &str| match v.chars().all(|c| c.is_ascii_alphanumeric()) && !v.is_empty() {
            true => Ok(v.to_string()),
            false => Err(format!("{what} `{v}` is not a HAProxy time like 24h")),
        };
    let pg_services = match pg_services {
        Value::Null => json!([]),
        s => s.clone(),
    };
    let services = p
        .haproxy_services
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            let keep = node.tls.is_some() || !s.needs_fleet_ca();
            if !keep {
                tracing::warn!(
                    "{}: haproxy service `{}` checks with the fleet CA (/etc/pki), which \
                     this render has none of (build-image makes it): left out",
                    node.nodename,
                    s.name
                );
            }
            keep
        })
        .map(|(i, s)| service(s).map_err(|e| format!("haproxy_services[{i}] ({}): {e}", s.name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "node": nodename,
        "stats_uri": format!("/haproxy/{}/", node.nodename),
        "admin_port": p.haproxy_exporter_port,
        "admin_username": user,
        "admin_password": password,
        "client_timeout": timeout("haproxy_client_timeout", &p.haproxy_client_timeout)?,
        "server_timeout": timeout("haproxy_server_timeout", &p.haproxy_server_timeout)?,
        "services": pg_services,
        "node_services": services,
    }))
}

/// The ports haproxy listens on: its admin page, then every service's.
pub fn ports(node: &Node) -> Vec<u16> {
    if !node.haproxy() {
        return Vec::new();
    }
    let mut out = vec![node.node.haproxy_exporter_port];
    if let Some(pg) = &node.pg {
        let p = &pg.params;
        out.extend(
            p.pg_default_services
                .iter()
                .chain(&p.pg_services)
                .map(|s| s.port),
        );
    }
    out.extend(node.haproxy_services().map(|s| s.port));
    out
}

/// A haproxy.cfg line fragment from the inventory: one line, no comment.
fn line(what: &str, s: &str) -> Result<String, String> {
    match s.chars().find(|c| c.is_control() || *c == '#') {
        Some(c) => Err(format!(
            "{what} {s:?} holds {c:?}, which a haproxy.cfg line cannot carry"
        )),
        None => Ok(s.trim().to_string()),
    }
}

fn service(s: &HaproxyService) -> Result<Value, String> {
    let name = plain("name", &s.name)?;
    if s.port == 0 {
        return Err("port 0".into());
    }
    let ip = match s.ip.as_deref() {
        None | Some("*") => "*".to_string(),
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("ip `{ip}` is not an IPv4 address or `*`"))?,
    };
    let mode = match s.protocol.as_deref().unwrap_or("tcp") {
        m @ ("tcp" | "http") => m.to_string(),
        other => return Err(format!("protocol `{other}` is not tcp or http")),
    };
    let balance = plain("balance", s.balance.as_deref().unwrap_or("roundrobin"))?;
    let options = s
        .options
        .iter()
        .map(|o| line("option", o))
        .collect::<Result<Vec<_>, _>>()?;
    let default_server = line("default", s.default.as_deref().unwrap_or(DEFAULT_SERVER))?;
    if s.servers.is_empty() {
        return Err("no servers".into());
    }
    let servers = s
        .servers
        .iter()
        .map(|v| {
            let name = plain("server name", &v.name)?;
            let ip = v.ip.parse::<Ipv4Addr>().map_err(|_| {
                format!("server {name}: ip `{}` is not an IPv4 address", v.ip)
            })?;
            // Pigsty writes a weight only in 0-255, haproxy's range.
            let weight = v.weight.filter(|w| *w < 256);
            Ok(json!({
                "name": name,
                "address": format!("{ip}:{}", v.port),
                "backup": v.backup.is_some_and(|b| b.0),
                "weight": weight,
                "options": line(&format!("server {name} options"), v.options.as_deref().unwrap_or(""))?,
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(json!({
        "name": name,
        "bind": format!("{ip}:{}", s.port),
        "mode": mode,
        "maxconn": s.maxconn.unwrap_or(10000),
        "balance": balance,
        "options": options,
        "default_server": default_server,
        "servers": servers,
    }))
}
