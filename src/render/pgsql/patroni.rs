//! The values of `/etc/patroni/patroni.yml` (Patroni 3.0.2, Debian 12), after Pigsty's
//! `oltp.yml` family of templates. Everything here is data for the template, which
//! writes each value through the `yaml` filter.

use serde::Serialize;
use serde_json::{Value, json};

use super::conf::Parameters;
use crate::model::{Fleet, Node, PgConf, PgInstance, PgRole, PgRto};

#[derive(Debug, Clone, Serialize)]
pub struct Patroni {
    pub namespace: String,
    pub scope: String,
    pub name: String,
    pub restapi_address: String,
    /// The REST API over TLS with the node's pair (`patroni_ssl_enabled`); Patroni's
    /// calls to the other members then verify them with the fleet CA (`ctl`).
    pub restapi_tls: bool,
    pub etcd_hosts: Vec<String>,
    /// TLS and the cluster's etcd user, with a fleet CA (as Pigsty's templates).
    pub etcd_auth: Option<EtcdAuth>,
    pub watchdog_mode: String,
    /// Only for a `pg_rto` plan (v4); v3 leaves Patroni's default.
    pub safety_margin: Option<u32>,
    pub dcs: Value,
    /// `bootstrap.initdb`: plain flags and `{key: value}` options.
    pub initdb: Vec<Value>,
    pub listen: String,
    pub connect_address: String,
    pub data_dir: String,
    pub bin_dir: String,
    pub parameters: std::collections::BTreeMap<String, String>,
    pub create_replica_methods: Vec<&'static str>,
    pub pgbackrest_restore: Option<String>,
    pub replicatefrom: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdAuth {
    pub cacert: &'static str,
    pub cert: &'static str,
    pub key: &'static str,
    pub username: String,
    pub password: String,
}

/// Where Debian installs a major version's server binaries.
pub fn bin_dir(version: u32) -> String {
    format!("/usr/lib/postgresql/{version}/bin")
}

pub fn patroni(
    fleet: &Fleet,
    node: &Node,
    pg: &PgInstance,
    params: &Parameters,
    listen_hosts: &str,
) -> Result<Patroni, String> {
    let p = &pg.params;
    let etcd_hosts = etcd_hosts(fleet, node)?;
    let remote_backups =
        p.pgbackrest_enabled.0 && p.pgbackrest_method != crate::model::LOCAL_BACKUP_REPO;
    let mut methods = vec!["basebackup"];
    if remote_backups {
        methods.push("pgbackrest");
    }
    Ok(Patroni {
        namespace: p.pg_namespace.clone(),
        scope: pg.cluster.clone(),
        name: pg.name.clone(),
        restapi_address: format!("{}:{}", node.ip, p.patroni_port),
        restapi_tls: node.patroni_https(),
        etcd_hosts,
        etcd_auth: node.tls.is_some().then(|| {
            let cluster = node.etcd.as_ref().map_or("etcd", |e| e.cluster.as_str());
            let (username, password) = crate::render::context::pg_etcd_user(fleet, pg, cluster);
            EtcdAuth {
                cacert: super::conf::CA_CERT,
                cert: super::conf::SERVER_CERT,
                key: super::conf::SERVER_KEY,
                username,
                password,
            }
        }),
        watchdog_mode: watchdog_mode(&p.patroni_watchdog_mode.0, p.pg_conf)?,
        safety_margin: matches!(p.pg_rto, PgRto::Plan(_)).then(|| p.rto_timings().safety_margin),
        dcs: dcs(fleet, pg, params)?,
        initdb: initdb(p),
        listen: format!("{listen_hosts}:{}", p.pg_port),
        connect_address: format!("{}:{}", node.ip, p.pg_port),
        data_dir: p.pg_data.clone(),
        bin_dir: bin_dir(p.pg_version),
        parameters: params.local.clone(),
        create_replica_methods: methods,
        pgbackrest_restore: remote_backups.then(|| {
            format!(
                "/usr/bin/pgbackrest --stanza={} --delta restore",
                pg.cluster
            )
        }),
        replicatefrom: replicatefrom(fleet, pg)?,
    })
}

/// The etcd cluster Patroni uses: the node's own, else `etcd` (as in the `etcd` context).
fn etcd_hosts(fleet: &Fleet, node: &Node) -> Result<Vec<String>, String> {
    let cluster = node.etcd.as_ref().map_or("etcd", |e| e.cluster.as_str());
    let hosts: Vec<String> = fleet
        .etcd_members(cluster)
        .iter()
        .filter_map(|m| {
            m.etcd
                .as_ref()
                .map(|e| format!("{}:{}", m.ip, e.params.etcd_port))
        })
        .collect();
    if hosts.is_empty() {
        return Err(format!(
            "Patroni needs etcd, and the inventory has no `{cluster}` group with etcd_seq members"
        ));
    }
    Ok(hosts)
}

/// `patroni_watchdog_mode`; YAML 1.1 reads an unquoted `off` as false, so booleans
/// count too. Pigsty's crit template promotes `off` to `automatic`.
fn watchdog_mode(raw: &str, conf: PgConf) -> Result<String, String> {
    let mode = match raw.to_ascii_lowercase().as_str() {
        "off" | "false" | "no" | "n" => "off",
        "automatic" => "automatic",
        "required" => "required",
        _ => {
            return Err(format!(
                "patroni_watchdog_mode `{raw}` is not one of off, automatic, required"
            ));
        }
    };
    let mode = if mode == "off" && conf == PgConf::Crit {
        "automatic"
    } else {
        mode
    };
    Ok(mode.to_string())
}

/// `bootstrap.dcs`: the cluster-wide configuration written to etcd at bootstrap.
fn dcs(fleet: &Fleet, pg: &PgInstance, params: &Parameters) -> Result<Value, String> {
    let p = &pg.params;
    let t = p.rto_timings();
    let crit = p.pg_conf == PgConf::Crit;
    let mut dcs = json!({
        "ttl": t.ttl,
        "loop_wait": t.loop_wait,
        "retry_timeout": t.retry_timeout,
        // Patroni 3.0 name; it still maps the older `master_start_timeout` to it.
        "primary_start_timeout": t.primary_start_timeout,
        "maximum_lag_on_failover": p.pg_rpo,
        "maximum_lag_on_syncnode": -1,
        "primary_stop_timeout": 30,
        "synchronous_mode": p.pg_rpo == 0 || crit,
        "synchronous_mode_strict": crit,
        "failsafe_mode": true,
        "postgresql": {
            "use_slots": true,
            "use_pg_rewind": true,
            "remove_data_directory_on_rewind_failure": true,
            "parameters": params.cluster,
        },
    });
    if let Some(standby) = standby_cluster(fleet, pg)? {
        dcs["standby_cluster"] = standby;
    }
    Ok(dcs)
}

/// A primary with `pg_upstream` leads a standby cluster replicating from that host.
fn standby_cluster(fleet: &Fleet, pg: &PgInstance) -> Result<Option<Value>, String> {
    let (Some(upstream), PgRole::Primary) = (pg.params.pg_upstream, pg.role) else {
        return Ok(None);
    };
    let port = fleet
        .nodes
        .iter()
        .find(|n| n.ip == upstream)
        .and_then(|n| n.pg.as_ref())
        .map_or(pg.params.pg_port, |u| u.params.pg_port);
    Ok(Some(json!({
        "host": upstream.to_string(),
        "port": port,
        "create_replica_methods": ["basebackup"],
    })))
}

/// A replica with `pg_upstream` clones and streams from that member (cascading).
fn replicatefrom(fleet: &Fleet, pg: &PgInstance) -> Result<Option<String>, String> {
    let Some(upstream) = pg.params.pg_upstream else {
        return Ok(None);
    };
    if pg.role == PgRole::Primary {
        return Ok(None);
    }
    fleet
        .pg_members(&pg.cluster)
        .iter()
        .find(|m| m.ip == upstream)
        .and_then(|m| m.pg.as_ref())
        .map(|m| Some(m.name.clone()))
        .ok_or_else(|| {
            format!(
                "pg_upstream {upstream} of {} is not a member of {}",
                pg.name, pg.cluster
            )
        })
}

/// `initdb` options, as Pigsty's templates choose them: checksums (on by default
/// from PostgreSQL 18, whose initdb is the first with `--no-data-checksums`), and
/// PostgreSQL 17's builtin provider for the C locales.
fn initdb(p: &crate::model::PgParams) -> Vec<Value> {
    let mut out = Vec::new();
    if p.pg_checksum.0 {
        out.push(json!("data-checksums"));
    } else if p.pg_version >= 18 {
        out.push(json!("no-data-checksums"));
    }
    let utf8 = matches!(p.pg_encoding.as_str(), "UTF8" | "UTF-8");
    let c_locale = matches!(p.pg_locale.to_ascii_uppercase().as_str(), "C" | "C.UTF-8");
    let mut opt = |k: &str, v: &str| {
        if !v.is_empty() {
            out.push(json!({ k: v }));
        }
    };
    if p.pg_version >= 17 && utf8 && c_locale {
        opt("encoding", &p.pg_encoding);
        opt("locale-provider", "builtin");
        opt("builtin-locale", &p.pg_locale);
    } else {
        opt("encoding", &p.pg_encoding);
        opt("locale", &p.pg_locale);
    }
    opt("lc-collate", &p.pg_lc_collate);
    opt("lc-ctype", &p.pg_lc_ctype);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_modes() {
        assert_eq!(watchdog_mode("off", PgConf::Oltp).unwrap(), "off");
        assert_eq!(watchdog_mode("False", PgConf::Oltp).unwrap(), "off");
        assert_eq!(watchdog_mode("off", PgConf::Crit).unwrap(), "automatic");
        assert_eq!(watchdog_mode("required", PgConf::Oltp).unwrap(), "required");
        assert!(watchdog_mode("sometimes", PgConf::Oltp).is_err());
    }
}
