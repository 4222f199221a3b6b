//! pgbouncer: `[databases]`, `[users]`, `userlist.txt` entries, after Pigsty's
//! `pgbouncer.database` / `pgbouncer.useropts` / `pgbouncer.userlist`.
//!
//! PgBouncer 1.18's ini parser (Debian 12) reads keys made of letters, digits, `_`, `.`
//! and `-` only and has no quoting, so a database or user that needs a pool entry must
//! have such a name; other names are an error that says so (a database can opt out
//! with `pgbouncer: false`). `userlist.txt` quotes names and passwords with `"`.

use serde::Serialize;
use serde_json::Value;

use super::sql::password;
use crate::model::{PgParams, PgUser};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub options: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Credential {
    /// The whole `"name" "password"` line.
    pub line: String,
}

/// `[databases]`: every database that does not opt out, through the local socket.
pub fn databases(p: &PgParams) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (i, d) in p.pg_databases.iter().enumerate() {
        let absent = d.extra.get("state").and_then(Value::as_str) == Some("absent");
        if d.pgbouncer.is_some_and(|f| !f.0) || absent {
            continue;
        }
        let at = |e: String| format!("pg_databases[{i}] ({}): {e}", d.name);
        let name = ini_key(&d.name).map_err(|e| {
            at(format!(
                "{e}; set `pgbouncer: false` to keep it out of the pool"
            ))
        })?;
        let mut opts = vec![
            format!("host={}", super::conf::SOCKET_DIR),
            format!("port={}", p.pg_port),
        ];
        if let Some(mode) = &d.pool_mode {
            opts.push(format!("pool_mode={}", pool_mode(mode).map_err(at)?));
        }
        if let Some(size) = d.pool_size {
            opts.push(format!("pool_size={size}"));
        }
        for (field, option) in DB_POOL_FIELDS {
            if let Some(v) = d.extra.get(*field) {
                opts.push(format!("{option}={}", pool_value(field, v).map_err(at)?));
            }
        }
        out.push(Entry {
            name,
            options: opts.join(" "),
        });
    }
    Ok(out)
}

/// Pigsty's database pool fields (v3 and v4 names) → pgbouncer connection options.
const DB_POOL_FIELDS: &[(&str, &str)] = &[
    ("pool_auth_user", "auth_user"),
    ("pool_size_min", "min_pool_size"),
    ("pool_reserve", "reserve_pool"),
    ("pool_size_reserve", "reserve_pool"),
    ("pool_connlimit", "max_db_connections"),
    ("pool_max_db_conn", "max_db_connections"),
];

fn pool_value(field: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        Value::String(s) if field == "pool_auth_user" => ini_key(s),
        other => Err(format!("{field}: expected a number, found {other}")),
    }
}

fn pool_mode(mode: &str) -> Result<&str, String> {
    match mode {
        "session" | "transaction" | "statement" => Ok(mode),
        other => Err(format!(
            "pool_mode `{other}` is not session, transaction or statement"
        )),
    }
}

/// `[users]`: per-user pool settings of every role that has some.
pub fn users(p: &PgParams) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (param, i, u) in all_roles(p) {
        if u.pool_mode.is_none() && u.pool_connlimit.is_none() {
            continue;
        }
        let at = |e: String| format!("{param}[{i}] ({}): {e}", u.name);
        let mut opts = Vec::new();
        if let Some(mode) = &u.pool_mode {
            opts.push(format!("pool_mode={}", pool_mode(mode).map_err(at)?));
        }
        if let Some(limit) = u.pool_connlimit.filter(|l| *l >= 0) {
            opts.push(format!("max_user_connections={limit}"));
        }
        if opts.is_empty() {
            continue;
        }
        out.push(Entry {
            name: ini_key(&u.name).map_err(at)?,
            options: opts.join(" "),
        });
    }
    Ok(out)
}

/// `userlist.txt`: roles marked `pgbouncer: true` that have a password (plain, md5 or
/// SCRAM, passed through as given), and the dbsu.
/// pgbouncer's auth_file: each pooled user with its SCRAM verifier (the one its role
/// holds, so pgbouncer passes the client's proof through to PostgreSQL), never the
/// password itself.
/// `scope`: the fleet's SCRAM salt scope (`scram::scope`).
pub fn userlist(p: &PgParams, scope: &str) -> Result<Vec<Credential>, String> {
    let mut out = Vec::new();
    // PgBouncer only admits users its auth_file lists, even for `peer` (the dbsu's
    // admin-console rule). An empty password matches no password login.
    let dbsu_listed = all_roles(p).any(|(_, _, u)| {
        u.name == p.pg_dbsu && u.pgbouncer.is_some_and(|f| f.0) && password(p, u).is_some()
    });
    if !dbsu_listed {
        let line = format!(
            "{} \"\"",
            quoted(&p.pg_dbsu).map_err(|e| format!("pg_dbsu: {e}"))?
        );
        out.push(Credential { line });
    }
    for (param, i, u) in all_roles(p) {
        if !u.pgbouncer.is_some_and(|f| f.0) {
            continue;
        }
        let Some(pw) = password(p, u) else { continue };
        let at = |e: String| format!("{param}[{i}] ({}): {e}", u.name);
        let secret = super::scram::verifier(scope, &u.name, &pw).map_err(at)?;
        let line = format!(
            "{} {}",
            quoted(&u.name).map_err(at)?,
            quoted(&secret).map_err(at)?
        );
        out.push(Credential { line });
    }
    Ok(out)
}

fn all_roles(p: &PgParams) -> impl Iterator<Item = (&'static str, usize, &PgUser)> {
    let absent = |u: &&PgUser| u.extra.get("state").and_then(Value::as_str) == Some("absent");
    let defaults = p
        .pg_default_roles
        .iter()
        .enumerate()
        .map(|(i, u)| ("pg_default_roles", i, u));
    let users = p
        .pg_users
        .iter()
        .enumerate()
        .map(|(i, u)| ("pg_users", i, u));
    defaults.chain(users).filter(move |(_, _, u)| !absent(u))
}

/// A `userlist.txt` field: double-quoted, a `"` written twice.
fn quoted(s: &str) -> Result<String, String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{s:?} holds the control character {c:?}, which userlist.txt cannot carry"
        )),
        None => Ok(format!("\"{}\"", s.replace('"', "\"\""))),
    }
}

/// A name pgbouncer's ini parser reads as a key.
pub fn ini_key(name: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.is_empty() && name.chars().all(ok) {
        return Ok(name.to_string());
    }
    Err(format!(
        "`{name}` cannot be a pgbouncer.ini key: PgBouncer 1.18 reads only letters, digits, `_`, `.` and `-` there"
    ))
}

/// A name in a comma-separated pgbouncer list (`admin_users`): no quoting exists there.
pub fn list_name(what: &str, name: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@');
    if !name.is_empty() && name.chars().all(ok) {
        return Ok(name.to_string());
    }
    Err(format!(
        "{what} `{name}` cannot be listed in pgbouncer.ini (letters, digits, _ . - @ only)"
    ))
}

/// `listen_addr` from `pg_listen` (`${ip}` is resolved by the loader; `${lo}` and
/// `${vip}` here), shared with Patroni's `postgresql.listen`.
pub fn listen_hosts(p: &PgParams) -> Result<String, String> {
    let vip = p.pg_vip_address.split('/').next().unwrap_or_default();
    let mut hosts = Vec::new();
    for h in p
        .pg_listen
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let h = match h {
            "${lo}" => "127.0.0.1",
            "${vip}" if p.pg_vip_enabled.0 => vip,
            "*" => "0.0.0.0",
            other => other,
        };
        if h.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "pg_listen: `{h}` is not an IP address (nor ${{ip}}, ${{lo}}, ${{vip}})"
            ));
        }
        hosts.push(h.to_string());
    }
    if hosts.is_empty() {
        return Err("pg_listen is empty".into());
    }
    Ok(hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_quotes() {
        assert_eq!(ini_key("meta_dev.1-x").unwrap(), "meta_dev.1-x");
        assert!(ini_key("my db").unwrap_err().contains("PgBouncer 1.18"));
        assert!(ini_key("a@b").is_err());
        assert_eq!(quoted("p\"w #%").unwrap(), "\"p\"\"w #%\"");
        assert!(quoted("a\nb").is_err());
        assert!(list_name("admin", "dbuser_dba").is_ok());
        assert!(list_name("admin", "a,b").is_err());
    }
}
