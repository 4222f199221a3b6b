//! Pigsty HBA rules → concrete `pg_hba.conf` / pgbouncer `pgb_hba.conf` lines.
//!
//! A rule is either Pigsty's alias form (`user`, `db`, `addr`, `auth`) or raw `rules`
//! lines. Rules are sorted by `order` (stable: equal orders keep inventory order, and
//! a rule without one sorts after Pigsty's defaults, 100..650), and a rule whose `role`
//! does not apply to this instance is left out. Names are quoted the way PostgreSQL's
//! hba tokenizer reads them back; what it cannot read back is an error, never a line
//! that means something else.

use std::net::{IpAddr, Ipv4Addr};

use crate::model::{HbaRule, PgRole};

/// Where rules without `order` sort: after every Pigsty default rule.
const DEFAULT_ORDER: i64 = 1000;

/// Pigsty's `intra` alias when `node_firewall_intranet` is not set.
pub const INTRANET: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// Which file the lines are for: the two differ in auth methods and in what they accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    Pgbouncer,
}

/// What the aliases of one instance resolve to.
#[derive(Debug, Clone)]
pub struct HbaEnv {
    pub dbsu: String,
    pub repl: String,
    pub monitor: String,
    pub admin: String,
    pub admin_ip: Ipv4Addr,
    pub infra: Vec<Ipv4Addr>,
    pub cluster: Vec<Ipv4Addr>,
    pub role: PgRole,
    pub offline_query: bool,
}

/// A rule with the inventory path it came from (`pg_hba_rules[2]`), for errors.
pub struct Sourced<'a> {
    pub path: String,
    pub rule: &'a HbaRule,
}

/// Label a parameter's rules with their inventory paths.
pub fn sourced<'a>(param: &str, rules: &'a [HbaRule]) -> impl Iterator<Item = Sourced<'a>> {
    let param = param.to_string();
    rules.iter().enumerate().map(move |(i, rule)| Sourced {
        path: format!("{param}[{i}]"),
        rule,
    })
}

/// Render rules into hba lines: a `# title [role]` comment, then the rule's lines.
pub fn render(
    rules: Vec<Sourced<'_>>,
    env: &HbaEnv,
    flavor: Flavor,
) -> Result<Vec<String>, String> {
    let mut rules = rules;
    rules.sort_by_key(|r| r.rule.order.unwrap_or(DEFAULT_ORDER));
    let mut out = Vec::new();
    for s in &rules {
        let lines = rule_lines(s.rule, env, flavor).map_err(|e| format!("{}: {e}", s.path))?;
        let Some(lines) = lines else { continue };
        let role = s.rule.role.as_deref().unwrap_or("default");
        let title = comment_text(s.rule.title.as_deref().unwrap_or(""));
        out.push(if title.is_empty() {
            format!("# [{role}]")
        } else {
            format!("# {title} [{role}]")
        });
        out.extend(lines);
    }
    Ok(out)
}

/// The lines of one rule, or `None` when its `role` does not apply here.
fn rule_lines(rule: &HbaRule, env: &HbaEnv, flavor: Flavor) -> Result<Option<Vec<String>>, String> {
    if !role_applies(rule.role.as_deref(), env)? {
        return Ok(None);
    }
    if !rule.lines.is_empty() {
        return raw_lines(&rule.lines).map(Some);
    }
    let addr = match rule.addr.as_deref() {
        Some(a) if !a.is_empty() => a,
        _ => return Err("needs `addr` (or raw `rules` lines)".into()),
    };
    let auth_alias = rule
        .auth
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("pwd");
    let auth = auth_method(auth_alias, flavor)?;
    let db = non_empty(rule.db.as_deref(), "all");
    if flavor == Flavor::Pgbouncer && db == "replication" {
        return Err("pgbouncer has no replication connections: `db: replication` is not allowed in pgb_hba_rules".into());
    }
    let db = token_list(db, DB_KEYWORDS).map_err(|e| format!("db: {e}"))?;
    let user = resolve_user(non_empty(rule.user.as_deref(), "all"), env);
    if flavor == Flavor::Pgbouncer && user.split(',').any(|u| u.trim().starts_with('+')) {
        return Err(format!(
            "user `{user}`: PgBouncer 1.18 hba has no role membership (`+role`) entries"
        ));
    }
    let user = token_list(&user, USER_KEYWORDS).map_err(|e| format!("user: {e}"))?;
    let ssl = matches!(auth_alias, "ssl" | "ssl-md5" | "ssl-sha" | "cert");
    let conn = if ssl { "hostssl" } else { "host" };
    let line = |conn: &str, cidr: &str| format!("{conn:<8} {db:<18} {user:<18} {cidr:<18} {auth}");
    let local = || format!("{:<8} {db:<18} {user:<18} {:<18} {auth}", "local", "");
    let lines = match addr {
        "local" => vec![local()],
        "localhost" => vec![
            local(),
            line("host", "127.0.0.1/32"),
            line("host", "::1/128"),
        ],
        "admin" => vec![line(conn, &format!("{}/32", env.admin_ip))],
        "infra" => env
            .infra
            .iter()
            .map(|ip| line(conn, &format!("{ip}/32")))
            .collect(),
        "cluster" => env
            .cluster
            .iter()
            .map(|ip| line(conn, &format!("{ip}/32")))
            .collect(),
        "intra" | "intranet" => INTRANET.iter().map(|c| line(conn, c)).collect(),
        "world" | "all" => vec![line(conn, "0.0.0.0/0"), line(conn, "::/0")],
        cidr => vec![line(conn, &parse_cidr(cidr)?)],
    };
    Ok(Some(
        lines
            .into_iter()
            .map(|l| l.trim_end().to_string())
            .collect(),
    ))
}

/// Pigsty's role filter: `common`/`default` rules apply everywhere, others only on
/// instances of that role, and `offline` rules also on replicas serving offline queries.
fn role_applies(role: Option<&str>, env: &HbaEnv) -> Result<bool, String> {
    let role = non_empty(role, "default");
    let mine = crate::model::serde_plain(&env.role);
    match role {
        "default" | "common" => Ok(true),
        "offline" if env.offline_query => Ok(true),
        "primary" | "replica" | "offline" | "standby" | "delayed" => Ok(role == mine),
        other => Err(format!(
            "unknown hba role `{other}`: expected common, primary, replica, offline, standby or delayed"
        )),
    }
}

fn raw_lines(lines: &[String]) -> Result<Vec<String>, String> {
    lines
        .iter()
        .map(|l| match l.chars().find(|c| c.is_control()) {
            Some(c) => Err(format!(
                "the raw hba line {l:?} holds the control character {c:?}"
            )),
            None => Ok(l.trim().to_string()),
        })
        .collect()
}

/// Pigsty's auth aliases. pgbouncer has no `ident`: Pigsty maps it (and `os`) to `peer`.
fn auth_method(alias: &str, flavor: Flavor) -> Result<&'static str, String> {
    let os = match flavor {
        Flavor::Postgres => "ident",
        Flavor::Pgbouncer => "peer",
    };
    Ok(match alias {
        "deny" | "reject" => "reject",
        "pwd" | "ssl" | "sha" | "ssl-sha" | "scram-sha-256" => "scram-sha-256",
        "md5" | "ssl-md5" => "md5",
        "cert" => "cert",
        "trust" => "trust",
        "peer" => "peer",
        "os" | "ident" => os,
        other => {
            return Err(format!(
                "unsupported auth `{other}`: expected one of deny, pwd, ssl, sha, cert, ssl-md5, ssl-sha, md5, os, ident, peer, trust, reject, scram-sha-256 (or write raw `rules`)"
            ));
        }
    })
}

/// `${dbsu}` and friends → the configured role names; anything else as written.
fn resolve_user(user: &str, env: &HbaEnv) -> String {
    match user {
        "${dbsu}" => env.dbsu.clone(),
        "${repl}" => env.repl.clone(),
        "${monitor}" => env.monitor.clone(),
        "${admin}" => env.admin.clone(),
        other => other.to_string(),
    }
}

const DB_KEYWORDS: &[&str] = &["all", "sameuser", "samerole", "samegroup", "replication"];
const USER_KEYWORDS: &[&str] = &["all"];

/// A comma-separated user or db list, each item quoted when it is not a plain name.
/// `+role` (membership) stays unquoted: PostgreSQL 15 reads a quoted `"+x"` as a
/// role literally named `+x`, so a membership role must itself be a plain name.
fn token_list(list: &str, keywords: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        if keywords.contains(&item) {
            out.push(item.to_string());
        } else if let Some(group) = item.strip_prefix('+') {
            if !is_plain(group) {
                return Err(format!(
                    "the membership role in `{item}` must be a plain name (letters, digits, _ . - $): pg_hba.conf cannot quote it"
                ));
            }
            out.push(item.to_string());
        } else {
            out.push(quote_name(item)?);
        }
    }
    Ok(out.join(","))
}

fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '$'))
}

/// A name as an hba token: plain names as they are, others double-quoted with `""`
/// for a quote (PostgreSQL's hba tokenizer reads that back as one `"`).
pub fn quote_name(name: &str) -> Result<String, String> {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the name {name:?} holds the control character {c:?}"
        ));
    }
    if name.is_empty() {
        return Err("empty name".into());
    }
    if is_plain(name) && !DB_KEYWORDS.contains(&name) && !name.starts_with('@') {
        return Ok(name.to_string());
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// An address: IPv4 or IPv6 with an optional prefix (a bare address is one host).
fn parse_cidr(addr: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "unknown addr `{addr}`: expected local, localhost, admin, infra, cluster, intra, world or an IP/CIDR"
        )
    };
    let (ip, prefix) = match addr.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (addr, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
    };
    Ok(format!("{ip}/{prefix}"))
}

fn non_empty<'a>(v: Option<&'a str>, default: &'a str) -> &'a str {
    v.filter(|s| !s.is_empty()).unwrap_or(default)
}

/// Comment text on one line: control characters (a newline would end the comment and
/// start a rule) become spaces.
pub fn comment_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HbaEnv {
        HbaEnv {
            dbsu: "postgres".into(),
            repl: "replicator".into(),
            monitor: "dbuser_monitor".into(),
            admin: "dbuser_dba".into(),
            admin_ip: Ipv4Addr::new(10, 10, 10, 10),
            infra: vec![Ipv4Addr::new(10, 10, 10, 10)],
            cluster: vec![Ipv4Addr::new(10, 10, 10, 11), Ipv4Addr::new(10, 10, 10, 12)],
            role: PgRole::Replica,
            offline_query: false,
        }
    }

    fn rule(user: &str, db: &str, addr: &str, auth: &str) -> HbaRule {
        HbaRule {
            user: Some(user.into()),
            db: Some(db.into()),
            addr: Some(addr.into()),
            auth: Some(auth.into()),
            lines: vec![],
            role: None,
            title: Some("t".into()),
            order: None,
        }
    }

    fn lines(r: HbaRule, flavor: Flavor) -> Vec<String> {
        render(
            vec![Sourced {
                path: "x".into(),
                rule: &r,
            }],
            &env(),
            flavor,
        )
        .unwrap()
    }

    fn squash(v: &[String]) -> Vec<String> {
        v.iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[test]
    fn aliases_expand() {
        let out = squash(&lines(
            rule("${dbsu}", "all", "local", "ident"),
            Flavor::Postgres,
        ));
        assert_eq!(out, ["# t [default]", "local all postgres ident"]);
        let out = squash(&lines(
            rule("${admin}", "all", "world", "ssl"),
            Flavor::Postgres,
        ));
        assert_eq!(out[1], "hostssl all dbuser_dba 0.0.0.0/0 scram-sha-256");
        assert_eq!(out[2], "hostssl all dbuser_dba ::/0 scram-sha-256");
        let out = squash(&lines(
            rule("${repl}", "replication", "localhost", "pwd"),
            Flavor::Postgres,
        ));
        assert_eq!(out.len(), 4);
        assert_eq!(
            out[2],
            "host replication replicator 127.0.0.1/32 scram-sha-256"
        );
        let out = squash(&lines(
            rule("+dbrole_readonly", "all", "intra", "pwd"),
            Flavor::Postgres,
        ));
        assert_eq!(out[1], "host all +dbrole_readonly 10.0.0.0/8 scram-sha-256");
        let out = squash(&lines(
            rule("all", "all", "cluster", "deny"),
            Flavor::Postgres,
        ));
        assert_eq!(
            out[1..],
            [
                "host all all 10.10.10.11/32 reject",
                "host all all 10.10.10.12/32 reject"
            ]
        );
        let out = squash(&lines(
            rule("x", "all", "172.17.0.1", "trust"),
            Flavor::Postgres,
        ));
        assert_eq!(out[1], "host all x 172.17.0.1/32 trust");
    }

    #[test]
    fn pgbouncer_flavor() {
        let out = squash(&lines(
            rule("${dbsu}", "pgbouncer", "local", "ident"),
            Flavor::Pgbouncer,
        ));
        assert_eq!(out[1], "local pgbouncer postgres peer");
        let r = rule("all", "replication", "local", "pwd");
        let err = render(
            vec![Sourced {
                path: "pgb_hba_rules[0]".into(),
                rule: &r,
            }],
            &env(),
            Flavor::Pgbouncer,
        );
        assert!(err.unwrap_err().contains("pgb_hba_rules[0]"));
    }

    #[test]
    fn roles_filter_and_order() {
        let mut primary_only = rule("a", "all", "world", "pwd");
        primary_only.role = Some("primary".into());
        primary_only.order = Some(1);
        let mut offline = rule("b", "all", "world", "pwd");
        offline.role = Some("offline".into());
        let mut first = rule("c", "all", "world", "pwd");
        first.order = Some(5);
        let rules = vec![
            Sourced {
                path: "p[0]".into(),
                rule: &primary_only,
            },
            Sourced {
                path: "p[1]".into(),
                rule: &offline,
            },
            Sourced {
                path: "p[2]".into(),
                rule: &first,
            },
        ];
        let out = render(rules, &env(), Flavor::Postgres).unwrap();
        let users: Vec<&str> = out
            .iter()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        assert_eq!(
            users,
            ["c", "c"],
            "primary rule dropped on a replica, offline without offline_query"
        );
        let mut e = env();
        e.offline_query = true;
        let rules = vec![Sourced {
            path: "p".into(),
            rule: &offline,
        }];
        assert_eq!(render(rules, &e, Flavor::Postgres).unwrap().len(), 3);
    }

    #[test]
    fn quoting_and_errors() {
        assert_eq!(quote_name("dbuser_meta").unwrap(), "dbuser_meta");
        assert_eq!(quote_name("my \"db\"").unwrap(), "\"my \"\"db\"\"\"");
        assert_eq!(quote_name("all").unwrap(), "\"all\"");
        assert_eq!(quote_name("a#b").unwrap(), "\"a#b\"");
        assert!(quote_name("a\nb").is_err());
        assert!(token_list("+bad name", USER_KEYWORDS).is_err());
        let bad = |r: HbaRule| {
            render(
                vec![Sourced {
                    path: "r".into(),
                    rule: &r,
                }],
                &env(),
                Flavor::Postgres,
            )
            .unwrap_err()
        };
        assert!(bad(rule("a", "all", "nowhere", "pwd")).contains("unknown addr `nowhere`"));
        assert!(bad(rule("a", "all", "world", "kerberos")).contains("unsupported auth `kerberos`"));
        let mut r = rule("a", "all", "world", "pwd");
        r.role = Some("leader".into());
        assert!(bad(r).contains("unknown hba role"));
        let mut raw = rule("a", "all", "world", "pwd");
        raw.lines = vec!["host all all 0.0.0.0/0 md5\nlocal all all trust".into()];
        assert!(bad(raw).contains("control character"));
    }

    #[test]
    fn titles_stay_comments() {
        let mut r = rule("a", "all", "world", "pwd");
        r.title = Some("evil\nlocal all all trust".into());
        let out = lines(r, Flavor::Postgres);
        assert_eq!(out[0], "# evil local all all trust [default]");
    }
}
