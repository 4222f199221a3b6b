//! HAProxy services of a cluster: `pg_default_services` + `pg_services`, each a
//! `listen` section whose servers are the cluster members its `selector` picks (or
//! that its `backup` expression adds as backups), health-checked against Patroni.
//! After Pigsty's `service.cfg`: a member in both sets is a backup server, a member
//! only in `backup` is appended as a backup.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::selector::Selector;
use crate::model::{HealthChecks, Node, PgParams, PgService};

/// Pigsty's `default-server` options when a service gives none (v3 and `pg_rto` seconds).
const V3_DEFAULT_SERVER: &str = "inter 3s fastinter 1s downinter 5s rise 3 fall 3 on-marked-down shutdown-sessions slowstart 30s maxconn 3000 maxqueue 128 weight 100";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Service {
    /// `{pg_cluster}-{name}`.
    pub name: String,
    pub bind: String,
    pub maxconn: u32,
    pub balance: String,
    /// Patroni REST path checked with `OPTIONS` (`/primary`, `/replica`, ...).
    pub check: String,
    pub default_server: String,
    pub servers: Vec<Server>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Server {
    pub name: String,
    pub address: String,
    pub check_port: u16,
    /// The check goes over TLS, verified with the fleet CA (`patroni_ssl_enabled`).
    pub check_ssl: bool,
    pub weight: u32,
    pub backup: bool,
}

/// Every service of this node's cluster, in inventory order (defaults first).
pub fn services(p: &PgParams, cluster: &str, members: &[&Node]) -> Result<Vec<Service>, String> {
    let defaults = p
        .pg_default_services
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("pg_default_services[{i}]"), s));
    let extra = p
        .pg_services
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("pg_services[{i}]"), s));
    defaults
        .chain(extra)
        .map(|(path, svc)| {
            service(p, cluster, members, svc).map_err(|e| format!("{path} ({}): {e}", svc.name))
        })
        .collect()
}

fn service(
    p: &PgParams,
    cluster: &str,
    members: &[&Node],
    svc: &PgService,
) -> Result<Service, String> {
    let selector = Selector::parse(svc.selector.as_deref().unwrap_or("[]"))?;
    let backup = svc.backup.as_deref().map(Selector::parse).transpose()?;
    let dest = svc.dest.as_deref().unwrap_or("default");
    let mut picked = Vec::new();
    let mut backups = Vec::new();
    for m in members {
        let attrs = attributes(m);
        let in_backup = match &backup {
            Some(b) => b.matches(&attrs)?,
            None => false,
        };
        if selector.matches(&attrs)? {
            picked.push(server(m, dest, &p.pg_default_service_dest, in_backup)?);
        } else if in_backup {
            backups.push(server(m, dest, &p.pg_default_service_dest, true)?);
        }
    }
    picked.extend(backups);
    Ok(Service {
        name: format!("{cluster}-{}", plain("name", &svc.name)?),
        bind: bind(svc.ip.as_deref().unwrap_or("*"), svc.port)?,
        maxconn: svc.maxconn.unwrap_or(5000),
        balance: balance(svc.balance.as_deref())?,
        check: check_path(svc.check.as_deref().unwrap_or("/"))?,
        default_server: default_server(svc.options.as_deref(), p.rto_checks())?,
        servers: picked,
    })
}

/// What a selector sees of a member: the hostvars Pigsty's expressions use.
pub fn attributes(m: &Node) -> Map<String, Value> {
    let Some(pg) = &m.pg else { return Map::new() };
    let v = json!({
        "pg_cluster": pg.cluster,
        "pg_seq": pg.seq,
        "pg_role": pg.role,
        "pg_instance": pg.name,
        "pg_offline_query": pg.params.pg_offline_query.0,
        "pg_weight": pg.params.pg_weight,
        "pg_port": pg.params.pg_port,
        "inventory_hostname": m.ip.to_string(),
    });
    v.as_object().cloned().unwrap_or_default()
}

fn server(m: &Node, dest: &str, default_dest: &str, backup: bool) -> Result<Server, String> {
    let Some(pg) = &m.pg else {
        return Err(format!("{} is not a PGSQL member", m.ip));
    };
    let p = &pg.params;
    let dest = if dest == "default" {
        default_dest
    } else {
        dest
    };
    let port = match dest {
        "postgres" => p.pg_port,
        "pgbouncer" => p.pgbouncer_port,
        other => other.parse::<u16>().map_err(|_| {
            format!(
                "unknown dest `{other}`: expected default, postgres, pgbouncer or a port number"
            )
        })?,
    };
    Ok(Server {
        name: pg.name.clone(),
        address: format!("{}:{port}", m.ip),
        check_port: p.patroni_port,
        check_ssl: m.patroni_https(),
        weight: p.pg_weight,
        backup,
    })
}

fn bind(ip: &str, port: u16) -> Result<String, String> {
    if ip == "*" || ip.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(format!("{ip}:{port}"));
    }
    Err(format!("ip `{ip}` is not `*` or an IPv4 address"))
}

fn balance(b: Option<&str>) -> Result<String, String> {
    match b.unwrap_or("roundrobin") {
        b @ ("roundrobin" | "leastconn" | "static-rr" | "first" | "source") => Ok(b.to_string()),
        other => Err(format!(
            "balance `{other}` is not one of roundrobin, leastconn, static-rr, first, source"
        )),
    }
}

fn check_path(path: &str) -> Result<String, String> {
    if path.starts_with('/') && path.chars().all(|c| c.is_ascii_graphic() && c != '#') {
        return Ok(path.to_string());
    }
    Err(format!("check `{path}` is not a URL path like /primary"))
}

/// `default-server` options: the service's own, else the health checks of the
/// `pg_rto_plan` entry `pg_rto` names (v4), else Pigsty v3's fixed timing.
fn default_server(options: Option<&str>, checks: Option<HealthChecks>) -> Result<String, String> {
    if let Some(o) = options {
        return match o.chars().find(|c| c.is_control() || *c == '#') {
            Some(c) => Err(format!(
                "options {o:?} hold {c:?}, which a haproxy.cfg line cannot carry"
            )),
            None => Ok(o.trim().to_string()),
        };
    }
    let Some(c) = checks else {
        return Ok(V3_DEFAULT_SERVER.to_string());
    };
    Ok(format!(
        "inter {} fastinter {} downinter {} rise {} fall {} on-marked-down shutdown-sessions slowstart 30s maxconn 3000 maxqueue 128 weight 100",
        time(c.inter_ms),
        time(c.fastinter_ms),
        time(c.downinter_ms),
        c.rise,
        c.fall
    ))
}

/// Milliseconds as HAProxy 2.6 reads them: whole seconds as `2s`, else `500ms`.
fn time(ms: u32) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A name that appears bare in haproxy.cfg.
pub fn plain(what: &str, s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Ok(s.to_string());
    }
    Err(format!(
        "{what} `{s}` may only hold letters, digits, `-`, `_` and `.`"
    ))
}

/// A value as one haproxy.cfg word: single-quoted (nothing is special inside) unless it
/// holds a `'`, then double-quoted with `\`, `"` and `$` escaped.
pub fn quote_word(s: &str) -> Result<String, String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{s:?} holds the control character {c:?}, which haproxy.cfg cannot carry"
        ));
    }
    if !s.contains('\'') {
        return Ok(format!("'{s}'"));
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_haproxy() {
        assert_eq!(quote_word("pigsty").unwrap(), "'pigsty'");
        assert_eq!(quote_word("a b#c\"$d").unwrap(), "'a b#c\"$d'");
        assert_eq!(quote_word("it's $x\\").unwrap(), "\"it's \\$x\\\\\"");
        assert!(quote_word("a\nb").is_err());
    }

    fn fast_checks() -> HealthChecks {
        HealthChecks {
            inter_ms: 1000,
            fastinter_ms: 500,
            downinter_ms: 1000,
            rise: 3,
            fall: 3,
        }
    }

    #[test]
    fn default_server_timing() {
        let v3 = default_server(None, None).unwrap();
        assert_eq!(v3, V3_DEFAULT_SERVER);
        let fast = HealthChecks {
            inter_ms: 1000,
            fastinter_ms: 500,
            downinter_ms: 1000,
            rise: 2,
            fall: 4,
        };
        let fast = default_server(None, Some(fast)).unwrap();
        assert!(
            fast.starts_with("inter 1s fastinter 500ms downinter 1s rise 2 fall 4 "),
            "{fast}"
        );
        assert_eq!(
            default_server(Some(" inter 1s "), Some(fast_checks())).unwrap(),
            "inter 1s"
        );
        assert!(default_server(Some("a\nb"), None).is_err());
    }

    /// Pigsty's `dest: 1433` (an integer: the port itself) sends the service to that
    /// port of every member, in the rendered haproxy.cfg.
    #[test]
    fn integer_dest_is_the_backend_port() {
        let text = "all:\n  children:\n    etcd:\n      hosts: { 10.0.0.1: { etcd_seq: 1 } }\n      vars: { etcd_cluster: etcd }\n    pg-x:\n      hosts:\n        10.0.0.1: { pg_seq: 1, pg_role: primary }\n        10.0.0.2: { pg_seq: 2, pg_role: replica }\n      vars:\n        pg_cluster: pg-x\n        pg_services: [ { name: mssql, port: 5440, dest: 1433, check: /primary, selector: '[]' } ]\n";
        let fleet = crate::inventory::load_str("x.yml", text).unwrap().fleet;
        let node = &fleet.nodes[0];
        let files = crate::render::render_node(&fleet, node, &[]).unwrap();
        let cfg = files
            .iter()
            .find(|f| f.path == "/etc/haproxy/haproxy.cfg")
            .expect("haproxy.cfg is rendered");
        let cfg = String::from_utf8_lossy(&cfg.content);
        let section = cfg
            .split("listen pg-x-mssql")
            .nth(1)
            .expect("the mssql service is rendered");
        let section = section.split("\nlisten ").next().unwrap_or(section);
        assert!(section.contains("bind *:5440"), "{section}");
        for ip in ["10.0.0.1", "10.0.0.2"] {
            assert!(
                section.contains(&format!(" {ip}:1433 check port 8008")),
                "{section}"
            );
        }
    }

    #[test]
    fn field_checks() {
        assert_eq!(bind("*", 5433).unwrap(), "*:5433");
        assert!(bind("sss.pigsty", 1).is_err());
        assert!(balance(Some("random")).is_err());
        assert!(check_path("/primary").is_ok());
        assert!(check_path("primary now").is_err());
    }
}
