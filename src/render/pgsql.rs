//! PGSQL context (`pg` in templates): Patroni, HBA, pgbouncer, HAProxy services,
//! pgBackRest and the SQL of roles and databases, all computed here so the templates
//! under `overlays/pgsql/` only place values. Also what the first-boot agent needs.
//!
//! A value that a target format cannot carry, or an inventory expression we do not
//! implement, is an error naming the file, the parameter and the value.

mod backrest;
pub(crate) mod conf;
pub(crate) mod haproxy;
mod hba;
mod patroni;
mod pgbouncer;
pub mod scram;
mod selector;
mod sql;

use serde_json::{Value, json};

use crate::model::{Fleet, Node, PgInstance, PgRole};
use crate::plan::node_json::{DcsKeys, PgBackrest, PgInfo, PgMember};

/// Files the SQL templates render to; the agent applies them in this order.
pub const SQL_FILES: [&str; 3] = [
    "/etc/pigsty/sql/10-roles.sql",
    "/etc/pigsty/sql/15-template.sql",
    "/etc/pigsty/sql/20-databases.sql",
];

/// A PGSQL value that cannot be rendered: which file it was for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgsqlError {
    pub file: &'static str,
    pub reason: String,
}

fn fail(file: &'static str) -> impl Fn(String) -> PgsqlError {
    move |reason| PgsqlError { file, reason }
}

const PATRONI_YML: &str = "/etc/patroni/patroni.yml";
const PGBOUNCER_INI: &str = "/etc/pgbouncer/pgbouncer.ini";
const HAPROXY_CFG: &str = "/etc/haproxy/haproxy.cfg";
const PGBACKREST_CONF: &str = "/etc/pgbackrest/pgbackrest.conf";
const TMPFILES: &str = "/etc/tmpfiles.d/pigsty-pgsql.conf";
const VIP_SCRIPT: &str = "/usr/lib/pigsty/pg-vip";
const EXPORTER_ENV: &str = "/etc/default/prometheus-postgres-exporter";

/// Template context for PGSQL files; null on non-PGSQL nodes.
pub fn context(fleet: &Fleet, node: &Node) -> Result<Value, PgsqlError> {
    let Some(pg) = &node.pg else {
        return Ok(Value::Null);
    };
    let p = &pg.params;
    let params = conf::parameters(p, &pg.cluster, node.tls.is_some()).map_err(fail(PATRONI_YML))?;
    let listen = pgbouncer::listen_hosts(p).map_err(fail(PATRONI_YML))?;
    let patroni = patroni::patroni(fleet, node, pg, &params, &listen).map_err(fail(PATRONI_YML))?;
    let env = hba_env(fleet, node, pg);
    let pg_rules = hba::sourced("pg_default_hba_rules", &p.pg_default_hba_rules)
        .chain(hba::sourced("pg_hba_rules", &p.pg_hba_rules))
        .collect();
    let pg_hba = hba::render(pg_rules, &env, hba::Flavor::Postgres).map_err(fail(PATRONI_YML))?;
    let mut ctx = base(fleet, node, pg);
    ctx["patroni"] = json!(patroni);
    ctx["patroni_parameters"] =
        patroni_parameter_lines(&ctx["patroni"], &params.sized).map_err(fail(PATRONI_YML))?;
    ctx["hba"] = json!(pg_hba);
    let scope = scram::scope(node.tls.as_deref());
    ctx["pgbouncer"] = pgbouncer_context(pg, &env, &listen, node.tls.is_some(), &scope)?;
    ctx["haproxy"] = haproxy_context(fleet, pg)?;
    ctx["pgbackrest"] = backrest_context(pg)?;
    ctx["sql"] = sql_context(pg, &scope)?;
    ctx["vip"] = vip_context(node, pg).map_err(fail(VIP_SCRIPT))?;
    ctx["exporter"] = exporter_context(node, pg).map_err(fail(EXPORTER_ENV))?;
    ctx["dirs"] = json!(directories(pg, &ctx["pgbackrest"]).map_err(fail(TMPFILES))?);
    Ok(ctx)
}

/// patroni.yml's two parameter maps as its lines (`"name": value`, marked when sized
/// at boot): the cluster's (`dcs`, under bootstrap.dcs) and the member's (`local`).
/// Formatted here rather than by the template's loop, which filtered every name and
/// value and searched the sized list for each: the most of patroni.yml's rendering,
/// the costliest file of a fleet's plan.
fn patroni_parameter_lines(patroni: &Value, sized: &[String]) -> Result<Value, String> {
    let lines = |map: &Value| -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for (k, v) in map.as_object().into_iter().flatten() {
            let key = super::filters::yaml_scalar(&Value::String(k.clone()))
                .map_err(|e| e.to_string())?;
            let value = super::filters::yaml_scalar(v).map_err(|e| e.to_string())?;
            let mark = if sized.iter().any(|s| s == k) {
                "  # sized at boot"
            } else {
                ""
            };
            out.push(format!("{key}: {value}{mark}"));
        }
        Ok(out)
    };
    Ok(json!({
        "dcs": lines(&patroni["dcs"]["postgresql"]["parameters"])?,
        "local": lines(&patroni["parameters"])?,
    }))
}

/// The cluster and its members: what every PGSQL part starts from.
fn base(fleet: &Fleet, node: &Node, pg: &PgInstance) -> Value {
    let p = &pg.params;
    let members: Vec<Value> = fleet
        .pg_members(&pg.cluster)
        .iter()
        .filter_map(|m| {
            let i = m.pg.as_ref()?;
            Some(json!({
                "name": i.name,
                "seq": i.seq,
                "ip": m.ip.to_string(),
                "role": i.role,
                "offline_query": i.params.pg_offline_query.0,
                "patroni_url": m.patroni_url(),
            }))
        })
        .collect();
    json!({
        "cluster": pg.cluster,
        "name": pg.name,
        "seq": pg.seq,
        "role": pg.role,
        "ip": node.ip.to_string(),
        "is_primary": pg.role == PgRole::Primary,
        "members": members,
        "rto": p.rto_timings(),
        "synchronous": p.pg_rpo == 0 || p.pg_conf == crate::model::PgConf::Crit,
        "version": p.pg_version,
        "port": p.pg_port,
        "dbsu": p.pg_dbsu,
    })
}

/// What `${dbsu}`, `infra`, `cluster`, ... mean for this instance's HBA rules.
fn hba_env(fleet: &Fleet, node: &Node, pg: &PgInstance) -> hba::HbaEnv {
    let p = &pg.params;
    hba::HbaEnv {
        dbsu: p.pg_dbsu.clone(),
        repl: p.pg_replication_username.clone(),
        monitor: p.pg_monitor_username.clone(),
        admin: p.pg_admin_username.clone(),
        admin_ip: node.node.admin_ip,
        infra: fleet
            .nodes
            .iter()
            .filter(|n| n.infra.is_some())
            .map(|n| n.ip)
            .collect(),
        cluster: fleet.pg_members(&pg.cluster).iter().map(|n| n.ip).collect(),
        role: pg.role,
        offline_query: p.pg_offline_query.0,
    }
}

/// `scope`: the fleet's SCRAM salt scope ([`scram::scope`]).
fn pgbouncer_context(
    pg: &PgInstance,
    env: &hba::HbaEnv,
    listen: &str,
    tls: bool,
    scope: &str,
) -> Result<Value, PgsqlError> {
    let p = &pg.params;
    let f = fail(PGBOUNCER_INI);
    if p.pgbouncer_auth_query.0 {
        return Err(f(
            "pgbouncer_auth_query needs Pigsty's monitor.pgbouncer_auth() function, which pigsty does not create; set it to false".into(),
        ));
    }
    let rules = hba::sourced("pgb_default_hba_rules", &p.pgb_default_hba_rules)
        .chain(hba::sourced("pgb_hba_rules", &p.pgb_hba_rules))
        .collect();
    let names = |what: &str, list: [&String; 2]| -> Result<String, String> {
        let mut out: Vec<String> = Vec::new();
        for n in list {
            let n = pgbouncer::list_name(what, n)?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out.join(", "))
    };
    Ok(json!({
        "listen_addr": listen,
        "port": p.pgbouncer_port,
        "pool_mode": p.pgbouncer_poolmode,
        "sslmode": p.pgbouncer_sslmode,
        "ssl_cert": conf::server_pair(tls).0,
        "ssl_key": conf::server_pair(tls).1,
        "socket_dir": conf::SOCKET_DIR,
        "admin_users": names("admin user", [&p.pg_dbsu, &p.pg_admin_username]).map_err(&f)?,
        "stats_users": names("stats user", [&p.pg_dbsu, &p.pg_monitor_username]).map_err(&f)?,
        "databases": pgbouncer::databases(p).map_err(&f)?,
        "users": pgbouncer::users(p).map_err(&f)?,
        "userlist": pgbouncer::userlist(p, scope).map_err(fail("/etc/pgbouncer/userlist.txt"))?,
        "hba": hba::render(rules, env, hba::Flavor::Pgbouncer).map_err(fail("/etc/pgbouncer/pgb_hba.conf"))?,
    }))
}

/// The cluster's haproxy services; the rest of haproxy.cfg is the node's
/// (`render/haproxy.rs`), which takes these from here.
fn haproxy_context(fleet: &Fleet, pg: &PgInstance) -> Result<Value, PgsqlError> {
    let members = fleet.pg_members(&pg.cluster);
    let services =
        haproxy::services(&pg.params, &pg.cluster, &members).map_err(fail(HAPROXY_CFG))?;
    Ok(json!({ "services": services }))
}

fn backrest_context(pg: &PgInstance) -> Result<Value, PgsqlError> {
    let p = &pg.params;
    if !p.pgbackrest_enabled.0 {
        return Ok(Value::Null);
    }
    let repo = backrest::repo(p, &pg.cluster).map_err(fail(PGBACKREST_CONF))?;
    Ok(json!({
        "stanza": pg.cluster,
        "pg_path": p.pg_data,
        "pg_port": p.pg_port,
        "repo": repo,
    }))
}

fn sql_context(pg: &PgInstance, scope: &str) -> Result<Value, PgsqlError> {
    let p = &pg.params;
    Ok(json!({
        "roles": sql::roles(p, scope).map_err(fail(SQL_FILES[0]))?,
        "template": sql::template(p).map_err(fail(SQL_FILES[1]))?,
        "databases": sql::databases(p).map_err(fail(SQL_FILES[2]))?,
        "baselines": sql::baselines(p),
        "privileges": sql::privilege_clauses(p).map_err(fail(SQL_FILES[1]))?,
        "dbsu": p.pg_dbsu,
        "replication_user": p.pg_replication_username,
        "monitor_user": p.pg_monitor_username,
        "admin_user": p.pg_admin_username,
    }))
}

/// Debian's PostgreSQL exporter (prometheus-postgres-exporter) as Pigsty's
/// pg_exporter is reached: on `pg_exporter_port`, connected as the monitor user over
/// the local socket (Pigsty's default HBA lets it in there with its password). The
/// DSN is a URL, the form every version of the exporter parses (0.11 splits the
/// key=value form on blanks, quotes or not), with the user and password
/// percent-encoded and the socket directory as the `host` parameter.
fn exporter_context(node: &Node, pg: &PgInstance) -> Result<Value, String> {
    let p = &pg.params;
    // Debian 12's exporter (0.11) turns the URL back into key=value text and splits
    // that on blanks: a password with one cannot reach it (0.17, Debian 13, can).
    if node.node.node_base == "debian12" && p.pg_monitor_password.contains(char::is_whitespace) {
        return Err(
            "pg_monitor_password holds a blank, which Debian 12's prometheus-postgres-exporter (0.11) cannot take in its connection string; choose one without, or node_base: debian13".into(),
        );
    }
    let mut userinfo = percent_encode(&p.pg_monitor_username);
    if !p.pg_monitor_password.is_empty() {
        userinfo.push(':');
        userinfo.push_str(&percent_encode(&p.pg_monitor_password));
    }
    let dsn = format!(
        "postgresql://{userinfo}@:{}/postgres?host={}&sslmode=disable",
        p.pg_port,
        percent_encode(conf::SOCKET_DIR)
    );
    // pgbouncer's admin database, as the monitor user (a `stats_users` member) over
    // pgbouncer's socket: Pigsty's pgbouncer HBA lets it in there with its password.
    let pgbouncer_url = format!(
        "postgres://{userinfo}@:{}/pgbouncer?host={}&sslmode=disable",
        p.pgbouncer_port,
        percent_encode(conf::SOCKET_DIR)
    );
    let mut pgbouncer_args = format!("--web.listen-address=:{}", p.pgbouncer_exporter_port);
    if !p.pgbouncer_exporter_options.trim().is_empty() {
        pgbouncer_args.push(' ');
        pgbouncer_args.push_str(p.pgbouncer_exporter_options.trim());
    }
    Ok(json!({
        "dsn": dsn,
        "args": format!("--web.listen-address=:{}", p.pg_exporter_port),
        "port": p.pg_exporter_port,
        "pgbouncer": {
            "url": pgbouncer_url,
            "args": pgbouncer_args,
            "port": p.pgbouncer_exporter_port,
        },
    }))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The cluster VIP (`pg_vip_enabled`): the address and prefix of `pg_vip_address` and
/// the interface (`auto`: the one holding the node's IP, found when the VIP is bound,
/// since one image may boot on machines whose interfaces are named apart). Patroni's
/// callbacks bind it on the member that leads (`/usr/lib/pigsty/pg-vip`). Null when off.
fn vip_context(node: &Node, pg: &PgInstance) -> Result<Value, String> {
    let p = &pg.params;
    if !p.pg_vip_enabled.0 {
        return Ok(Value::Null);
    }
    // The inventory checked the CIDR form.
    let (ip, prefix) = p
        .pg_vip_address
        .split_once('/')
        .ok_or_else(|| format!("pg_vip_address `{}` has no prefix length", p.pg_vip_address))?;
    let iface = p.pg_vip_interface.trim();
    let auto = iface.is_empty() || iface.eq_ignore_ascii_case("auto");
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !auto && (iface.len() > 15 || !iface.chars().all(ok)) {
        return Err(format!(
            "pg_vip_interface `{iface}` is not an interface name (letters, digits, `.`, `_`, `-`; at most 15)"
        ));
    }
    Ok(json!({
        "ip": ip,
        "prefix": prefix,
        "interface": if auto { "auto" } else { iface },
        "node_ip": node.ip.to_string(),
        "script": VIP_SCRIPT,
    }))
}

/// Directories the PGSQL services need, created by systemd-tmpfiles at boot. The data
/// directory is created empty: Patroni initialises (primary) or clones (replica) into
/// an empty directory, and never into one that holds anything.
fn directories(pg: &PgInstance, backrest: &Value) -> Result<Vec<Value>, String> {
    let p = &pg.params;
    // tmpfiles.d fields are separated by blanks: keep paths and the owner plain.
    let plain = |what: &str, s: &str| -> Result<(), String> {
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-');
        match s.chars().all(ok) && !s.is_empty() {
            true => Ok(()),
            false => Err(format!(
                "{what} `{s}` may only hold letters, digits, `/`, `_`, `.` and `-`"
            )),
        }
    };
    plain("pg_dbsu", &p.pg_dbsu)?;
    if !p.pg_data.starts_with('/') {
        return Err(format!("pg_data `{}` is not an absolute path", p.pg_data));
    }
    let mut dirs: Vec<(String, &str)> = Vec::new();
    if let Some(parent) = std::path::Path::new(&p.pg_data)
        .parent()
        .filter(|d| d != &std::path::Path::new("/"))
    {
        dirs.push((parent.to_string_lossy().into_owned(), "0755"));
    }
    dirs.push((p.pg_data.clone(), "0700"));
    dirs.push(("/pg/log".into(), "0755"));
    dirs.push((conf::LOG_DIR.into(), "0750"));
    if !backrest.is_null() {
        dirs.push(("/pg/log/pgbackrest".into(), "0750"));
        dirs.push(("/pg/spool".into(), "0750"));
        if let Some(local) = backrest["repo"]["local_path"].as_str() {
            dirs.push((local.to_string(), "0750"));
        }
    }
    let mut out: Vec<Value> = Vec::new();
    for (path, mode) in dirs {
        plain("directory", &path)?;
        if !out.iter().any(|d| d["path"] == path.as_str()) {
            out.push(json!({ "path": path, "mode": mode }));
        }
    }
    Ok(out)
}

/// Whether the node carries its cluster's database objects (the SQL files and the
/// join steps that apply them): every member of a cluster whose primary writes (not
/// a standby cluster, which replays its upstream), so that whichever member leads
/// after a failover applies a change of them.
pub fn applies_sql(fleet: &Fleet, node: &Node) -> bool {
    let Some(pg) = node.pg.as_ref() else {
        return false;
    };
    fleet.pg_members(&pg.cluster).iter().any(|m| {
        m.pg.as_ref()
            .is_some_and(|i| i.role == PgRole::Primary && i.params.pg_upstream.is_none())
    })
}

/// What the first-boot agent needs to join Patroni and apply database objects.
pub fn agent(fleet: &Fleet, node: &Node) -> Option<PgInfo> {
    let pg = node.pg.as_ref()?;
    let p = &pg.params;
    let members = fleet
        .pg_members(&pg.cluster)
        .iter()
        .filter_map(|m| {
            let i = m.pg.as_ref()?;
            Some(PgMember {
                name: i.name.clone(),
                seq: i.seq,
                ip: m.ip.to_string(),
                role: i.role,
                offline_query: i.params.pg_offline_query.0,
                patroni_url: m.patroni_url().unwrap_or_default(),
            })
        })
        .collect();
    let prefix = format!("{}/{}", p.pg_namespace.trim_end_matches('/'), pg.cluster);
    // A primary with pg_upstream leads a standby cluster: it replays its upstream and
    // is read-only, so its objects come from the upstream, not from SQL.
    let upstream = p.pg_upstream.filter(|_| pg.role == PgRole::Primary);
    // Carried by every member of a writable cluster and applied by the one that leads
    // when its join runs (the agent asks the server: a replica skips them), as the
    // dbsu over the local socket, in order: `psql -X -v ON_ERROR_STOP=1 -d postgres
    // -f FILE`. The files are idempotent.
    let writable = applies_sql(fleet, node);
    Some(PgInfo {
        cluster: pg.cluster.clone(),
        name: pg.name.clone(),
        seq: pg.seq,
        role: pg.role,
        ip: node.ip.to_string(),
        is_primary: pg.role == PgRole::Primary,
        members,
        version: p.pg_version,
        port: p.pg_port,
        dbsu: p.pg_dbsu.clone(),
        patroni_port: p.patroni_port,
        patroni_url: node.patroni_url().unwrap_or_default(),
        namespace: p.pg_namespace.clone(),
        dcs_keys: DcsKeys {
            leader: format!("{prefix}/leader"),
            initialize: format!("{prefix}/initialize"),
            config: format!("{prefix}/config"),
            members: format!("{prefix}/members/"),
        },
        pgbouncer_port: p.pgbouncer_port,
        data_dir: p.pg_data.clone(),
        bin_dir: patroni::bin_dir(p.pg_version),
        socket_dir: conf::SOCKET_DIR.to_string(),
        standby_of: upstream.map(|ip| ip.to_string()),
        sql_files: if writable {
            SQL_FILES.iter().map(|f| f.to_string()).collect()
        } else {
            Vec::new()
        },
        pgbackrest: PgBackrest {
            enabled: p.pgbackrest_enabled.0,
            stanza: pg.cluster.clone(),
            method: p.pgbackrest_method.clone(),
            config: PGBACKREST_CONF.to_string(),
        },
        sizing: Some(conf::sizing(p)),
        fs_paths: vec![p.pg_fs_main.clone(), p.pg_data.clone()],
        patroni_config: PATRONI_YML.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(vars: &str) -> Fleet {
        let text = format!(
            "all:\n  children:\n    etcd: {{ hosts: {{ 10.10.10.10: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-test:\n      hosts:\n        10.10.10.11: {{ pg_seq: 1, pg_role: primary }}\n        10.10.10.12: {{ pg_seq: 2, pg_role: replica }}\n        10.10.10.13: {{ pg_seq: 3, pg_role: replica, pg_offline_query: true }}\n      vars:\n        pg_cluster: pg-test\n{vars}  vars: {{ admin_ip: 10.10.10.10 }}\n"
        );
        crate::inventory::load_str("t.yml", &text).unwrap().fleet
    }

    fn ctx_of(f: &Fleet, name: &str) -> Result<Value, PgsqlError> {
        context(f, f.find(name).unwrap())
    }

    fn servers(ctx: &Value, service: &str) -> Vec<(String, bool)> {
        let svc = ctx["haproxy"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap();
        svc["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["backup"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn default_services_follow_pigsty_selectors() {
        let f = fleet("");
        let ctx = ctx_of(&f, "pg-test-1").unwrap();
        let s = |n: &str, b: bool| (n.to_string(), b);
        assert_eq!(
            servers(&ctx, "pg-test-primary"),
            [
                s("pg-test-1", false),
                s("pg-test-2", false),
                s("pg-test-3", false)
            ]
        );
        assert_eq!(
            servers(&ctx, "pg-test-replica"),
            [
                s("pg-test-1", true),
                s("pg-test-2", false),
                s("pg-test-3", false)
            ]
        );
        assert_eq!(
            servers(&ctx, "pg-test-offline"),
            [s("pg-test-3", false), s("pg-test-2", true)]
        );
        let primary = &ctx["haproxy"]["services"][0];
        assert_eq!(
            primary["servers"][0]["address"], "10.10.10.11:6432",
            "dest default → pgbouncer"
        );
        assert_eq!(
            ctx["haproxy"]["services"][2]["servers"][0]["address"], "10.10.10.11:5432",
            "dest postgres"
        );
    }

    #[test]
    fn unsupported_backup_expression_is_a_clear_error() {
        let f = fleet(
            "        pg_services: [ { name: x, port: 5440, selector: '[? pg_seq > `1`]' } ]\n",
        );
        let err = ctx_of(&f, "pg-test-1").unwrap_err();
        assert_eq!(err.file, HAPROXY_CFG);
        assert!(
            err.reason.contains("pg_services[0] (x)") && err.reason.contains("pg_seq > `1`"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn parameters_split_between_dcs_and_local() {
        let f = fleet("        pg_parameters: { max_connections: 300, work_mem: 32MB }\n");
        let ctx = ctx_of(&f, "pg-test-2").unwrap();
        let dcs = &ctx["patroni"]["dcs"]["postgresql"]["parameters"];
        let local = &ctx["patroni"]["parameters"];
        assert_eq!(dcs["max_connections"], "300");
        assert_eq!(dcs["wal_level"], "logical");
        assert!(local.get("max_connections").is_none());
        assert_eq!(local["work_mem"], "32MB");
        assert_eq!(
            local["shared_preload_libraries"],
            "pg_stat_statements, auto_explain"
        );
        assert_eq!(ctx["patroni"]["dcs"]["primary_start_timeout"], 25);
        assert_eq!(ctx["patroni"]["etcd_hosts"], json!(["10.10.10.10:2379"]));
    }

    #[test]
    fn patroni_owned_parameters_are_refused() {
        let f = fleet("        pg_parameters: { port: 5555 }\n");
        assert!(
            ctx_of(&f, "pg-test-1")
                .unwrap_err()
                .reason
                .contains("Patroni sets `port`")
        );
    }

    #[test]
    fn hba_has_defaults_in_order_and_user_rules_after() {
        let f = fleet(
            "        pg_hba_rules: [ { user: x, db: all, addr: 172.17.0.0/16, auth: pwd, title: docker } ]\n",
        );
        let ctx = ctx_of(&f, "pg-test-1").unwrap();
        let hba: Vec<&str> = ctx["hba"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert!(
            hba[1].starts_with("local") && hba[1].contains("postgres") && hba[1].ends_with("ident")
        );
        assert!(hba.last().unwrap().contains("172.17.0.0/16"));
    }

    #[test]
    fn sql_roles_get_credential_passwords() {
        let f = fleet("");
        let ctx = ctx_of(&f, "pg-test-1").unwrap();
        let roles = ctx["sql"]["roles"].as_array().unwrap();
        let dba = roles.iter().find(|r| r["name"] == "dbuser_dba").unwrap();
        // The credential parameter's password, stored as its SCRAM verifier.
        assert_eq!(
            dba["password"],
            scram::verifier("", "dbuser_dba", "DBUser.DBA").unwrap()
        );
        assert_eq!(dba["alter"], "SUPERUSER");
        let readonly = roles
            .iter()
            .find(|r| r["name"] == "dbrole_readonly")
            .unwrap();
        assert_eq!(readonly["create"], "NOLOGIN");
        assert!(readonly["password"].is_null());
    }

    #[test]
    fn pigstys_defaults_checksums_and_crit_synchronous_mode() {
        let f = fleet("");
        let dcs = |ctx: &Value| ctx["patroni"]["dcs"].clone();
        let ctx = ctx_of(&f, "pg-test-1").unwrap();
        let initdb = &ctx["patroni"]["initdb"];
        assert_eq!(
            initdb[0], "data-checksums",
            "pg_checksum is true by default: {initdb}"
        );
        assert_eq!(dcs(&ctx)["synchronous_mode"], false);
        assert_eq!(dcs(&ctx)["synchronous_mode_strict"], false);
        let f = fleet("        pg_conf: crit.yml\n");
        let ctx = ctx_of(&f, "pg-test-1").unwrap();
        assert_eq!(dcs(&ctx)["synchronous_mode"], true);
        assert_eq!(
            dcs(&ctx)["synchronous_mode_strict"],
            true,
            "crit.yml blocks writes without a sync standby"
        );
        let initdb = |vars: &str| {
            let f = fleet(vars);
            ctx_of(&f, "pg-test-1").unwrap()["patroni"]["initdb"].to_string()
        };
        let off17 = initdb("        pg_checksum: false\n        pg_version: 17\n");
        assert!(
            !off17.contains("checksums"),
            "PostgreSQL 17 has no --no-data-checksums: {off17}"
        );
        let off18 = initdb("        pg_checksum: false\n        pg_version: 18\n");
        assert!(
            off18.contains("\"no-data-checksums\""),
            "18 checksums by default: {off18}"
        );
    }

    #[test]
    fn the_exporter_listens_on_pigstys_port_with_an_encoded_dsn() {
        let f = fleet("        pg_monitor_password: 'a b@c'\n        pg_exporter_port: 9700\n");
        let ctx = ctx_of(&f, "pg-test-1").unwrap();
        assert_eq!(ctx["exporter"]["args"], "--web.listen-address=:9700");
        assert_eq!(
            ctx["exporter"]["dsn"],
            "postgresql://dbuser_monitor:a%20b%40c@:5432/postgres?host=%2Fvar%2Frun%2Fpostgresql&sslmode=disable"
        );
        // Debian 12's exporter cannot take a blank in the password: said at render.
        let f = fleet(
            "        pg_monitor_password: 'a b@c'\n        node_base: debian12\n        node_repo_modules: node\n",
        );
        let e = ctx_of(&f, "pg-test-1").unwrap_err();
        assert_eq!(e.file, "/etc/default/prometheus-postgres-exporter");
        assert!(e.reason.contains("0.11"), "{}", e.reason);
    }

    #[test]
    fn agent_knows_the_leader_key() {
        let f = fleet("");
        let a = agent(&f, f.find("pg-test-2").unwrap()).unwrap();
        assert_eq!(a.dcs_keys.leader, "/pg/pg-test/leader");
        assert_eq!(a.members[0].patroni_url, "http://10.10.10.11:8008");
        assert_eq!(a.sql_files, SQL_FILES, "every member carries the SQL");
        assert!(a.standby_of.is_none());
        let primary = agent(&f, f.find("pg-test-1").unwrap()).unwrap();
        assert_eq!(primary.sql_files, SQL_FILES);
    }
}
