//! Roles, template1 and databases as the SQL templates need them (`10-roles.sql`,
//! `15-template.sql`, `20-databases.sql`): attributes resolved to SQL keywords, passwords filled in from
//! the credential parameters, and the inventory's values left as values, which the
//! templates quote with `sql_literal` / `sql_ident`.

use serde::Serialize;

use crate::model::{Extension, PgDatabase, PgParams, PgUser, Schema};
use crate::render::filters::{quote_ident, quote_literal};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Role {
    pub name: String,
    /// Keywords for `CREATE ROLE` (`LOGIN` unless `login: false`, like `CREATE USER`).
    pub create: String,
    /// Keywords for `ALTER ROLE`: only the attributes the inventory states.
    pub alter: String,
    pub password: Option<String>,
    pub expire_at: Option<String>,
    pub expire_in: Option<u32>,
    pub connlimit: Option<i64>,
    pub parameters: Vec<Setting>,
    pub comment: Option<String>,
    pub member_of: Vec<String>,
}

/// `ALTER ROLE/DATABASE ... SET name = v1, v2`: one value, or the elements of a list
/// setting, each written as a literal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Setting {
    pub name: String,
    pub values: Vec<String>,
}

/// Settings PostgreSQL quotes element by element (`GUC_LIST_QUOTE`): given one literal,
/// `SET search_path = '"$user", public'` names a single schema called `"$user", public`,
/// so their elements are split out (an element in `"..."` loses its quotes).
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
];

fn setting_values(name: &str, value: &str) -> Vec<String> {
    if !LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        return vec![value.to_string()];
    }
    let mut items = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            c if c.is_whitespace() && !quoted => {}
            c => cur.push(c),
        }
    }
    items.push(cur);
    items.retain(|i| !i.is_empty());
    if items.is_empty() {
        // `SET x = ;` is not SQL: an empty list is one empty literal.
        items.push(String::new());
    }
    items
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Database {
    pub name: String,
    pub owner: Option<String>,
    pub template: Option<String>,
    pub encoding: Option<String>,
    pub locale: Option<String>,
    pub lc_collate: Option<String>,
    pub lc_ctype: Option<String>,
    pub tablespace: Option<String>,
    /// `ALLOW_CONNECTIONS` as SQL (`true`/`false`), when the inventory states it.
    pub allowconn: Option<&'static str>,
    pub revokeconn: bool,
    pub connlimit: Option<i64>,
    pub parameters: Vec<Setting>,
    pub comment: Option<String>,
    /// `CREATE SCHEMA` / `DROP SCHEMA` statements, then the extensions' ones.
    pub schemas: Vec<String>,
    pub extensions: Vec<String>,
    /// Where the baseline file lies in the image, when the database has one.
    pub baseline: Option<String>,
    /// The psql `\connect` argument that reaches this database whatever its name.
    pub connect: String,
}

/// `pg_default_roles` then `pg_users`, without the ones marked `state: absent`.
/// The roles to create; passwords as SCRAM verifiers (see [`super::scram`]), the ones
/// pgbouncer's userlist holds.
pub fn roles(p: &PgParams, scope: &str) -> Result<Vec<Role>, String> {
    let all = p.pg_default_roles.iter().map(|u| ("pg_default_roles", u));
    let all = all.chain(p.pg_users.iter().map(|u| ("pg_users", u)));
    let mut out = Vec::new();
    for (i, (param, user)) in all.enumerate() {
        if state(&user.extra) == Some("absent") {
            continue;
        }
        let index = if param == "pg_users" {
            i - p.pg_default_roles.len()
        } else {
            i
        };
        out.push(
            role(p, user, scope).map_err(|e| format!("{param}[{index}] ({}): {e}", user.name))?,
        );
    }
    Ok(out)
}

fn role(p: &PgParams, u: &PgUser, scope: &str) -> Result<Role, String> {
    let flag = |f: Option<crate::model::Flag>| f.map(|f| f.0);
    let login = flag(u.login);
    let attrs = [
        ("LOGIN", "NOLOGIN", login),
        ("SUPERUSER", "NOSUPERUSER", flag(u.superuser)),
        ("CREATEDB", "NOCREATEDB", flag(u.createdb)),
        ("CREATEROLE", "NOCREATEROLE", flag(u.createrole)),
        ("INHERIT", "NOINHERIT", flag(u.inherit)),
        ("REPLICATION", "NOREPLICATION", flag(u.replication)),
        ("BYPASSRLS", "NOBYPASSRLS", flag(u.bypassrls)),
    ];
    let alter: Vec<&str> = attrs
        .iter()
        .filter_map(|(yes, no, v)| v.map(|v| if v { *yes } else { *no }))
        .collect();
    if let Some(date) = &u.expire_at {
        check_date(date)?;
    }
    Ok(Role {
        name: u.name.clone(),
        create: if login == Some(false) {
            "NOLOGIN"
        } else {
            "LOGIN"
        }
        .into(),
        alter: alter.join(" "),
        password: password(p, u)
            .map(|pw| super::scram::verifier(scope, &u.name, &pw))
            .transpose()?,
        expire_at: u.expire_at.clone().filter(|_| u.expire_in.is_none()),
        expire_in: u.expire_in,
        connlimit: u.connlimit,
        parameters: settings(&u.parameters)?,
        comment: u.comment.clone(),
        member_of: u.roles.clone(),
    })
}

/// A role's password: its own, else the credential parameter of the built-in role it
/// is (Pigsty's `pg-init-roles.sql` sets those from `pg_*_password`).
pub fn password(p: &PgParams, u: &PgUser) -> Option<String> {
    if let Some(pw) = &u.password {
        return Some(pw.0.clone());
    }
    let builtin = [
        (&p.pg_admin_username, &p.pg_admin_password),
        (&p.pg_monitor_username, &p.pg_monitor_password),
        (&p.pg_replication_username, &p.pg_replication_password),
    ];
    builtin
        .into_iter()
        .find(|(name, _)| **name == u.name)
        .map(|(_, pw)| pw.clone())
        .filter(|pw| !pw.is_empty())
}

/// `expire_at` must be a date, since it is written into `VALID UNTIL`.
fn check_date(date: &str) -> Result<(), String> {
    let parts: Vec<&str> = date.split('-').collect();
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() == 3 && digits(parts[0], 4) && digits(parts[1], 2) && digits(parts[2], 2) {
        return Ok(());
    }
    Err(format!("expire_at `{date}` is not a date (YYYY-MM-DD)"))
}

fn settings(
    map: &std::collections::BTreeMap<String, crate::model::Scalar>,
) -> Result<Vec<Setting>, String> {
    map.iter()
        .map(|(k, v)| {
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
            {
                return Err(format!(
                    "parameters: {k:?} is not a PostgreSQL parameter name"
                ));
            }
            Ok(Setting {
                name: k.clone(),
                values: setting_values(k, &v.0),
            })
        })
        .collect()
}

fn state(extra: &std::collections::BTreeMap<String, serde_json::Value>) -> Option<&str> {
    extra.get("state").and_then(|s| s.as_str())
}

/// What Pigsty's `pg-init-template.sql` sets up in template1 and postgres (so every
/// database created later inherits it): default privileges for the dbsu, the admin
/// user and `dbrole_admin`, `pg_default_schemas`, `pg_default_extensions`, and the
/// `monitor` schema with its heartbeat.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Template {
    /// Roles whose new objects get `pg_default_privileges`.
    pub privilege_owners: Vec<String>,
    /// Statements for `pg_default_schemas` and `pg_default_extensions`.
    pub schemas: Vec<String>,
    pub extensions: Vec<String>,
    /// Databases the file sets up, in order, as psql `\connect` arguments.
    pub databases: Vec<String>,
}

pub fn template(p: &PgParams) -> Result<Template, String> {
    let mut owners = vec![p.pg_dbsu.clone(), p.pg_admin_username.clone()];
    owners.push("dbrole_admin".into());
    owners.dedup();
    for (i, s) in p.pg_default_schemas.iter().enumerate() {
        names("pg_default_schemas", i, &s.name)?;
    }
    for (i, e) in p.pg_default_extensions.iter().enumerate() {
        names("pg_default_extensions", i, &e.name)?;
    }
    Ok(Template {
        privilege_owners: owners,
        schemas: statements(&p.pg_default_schemas, schema_sql)?,
        extensions: statements(&p.pg_default_extensions, extension_sql)?,
        databases: vec![psql_connect("template1")?, psql_connect("postgres")?],
    })
}

/// The tail of `ALTER DEFAULT PRIVILEGES FOR ROLE r ...` for each
/// `pg_default_privileges` entry, as template1 and every database owner get them.
pub fn privilege_clauses(p: &PgParams) -> Result<Vec<String>, String> {
    p.pg_default_privileges
        .iter()
        .map(|d| {
            let role = match d.role.as_str() {
                "PUBLIC" => "PUBLIC".to_string(),
                r => quote_ident(r)?,
            };
            let to = if d.verb == "GRANT" { "TO" } else { "FROM" };
            let option = if d.grant_option {
                " WITH GRANT OPTION"
            } else {
                ""
            };
            Ok(format!(
                "{} {} ON {} {to} {role}{option}",
                d.verb, d.privileges, d.objects
            ))
        })
        .collect()
}

fn statements<T>(
    items: &[T],
    sql: fn(&T) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    items.iter().map(sql).collect()
}

/// A schema's statement: created (with its owner), or dropped when `state: absent`.
fn schema_sql(s: &Schema) -> Result<String, String> {
    let name = quote_ident(&s.name)?;
    Ok(match (&s.owner, s.absent) {
        (_, true) => format!("DROP SCHEMA IF EXISTS {name} CASCADE;"),
        (Some(o), false) => format!(
            "CREATE SCHEMA IF NOT EXISTS {name} AUTHORIZATION {};",
            quote_ident(o)?
        ),
        (None, false) => format!("CREATE SCHEMA IF NOT EXISTS {name};"),
    })
}

/// An extension's statement: created (in its schema, at its version), or dropped
/// when `state: absent`.
fn extension_sql(e: &Extension) -> Result<String, String> {
    let name = quote_ident(&e.name)?;
    if e.absent {
        return Ok(format!("DROP EXTENSION IF EXISTS {name} CASCADE;"));
    }
    let mut sql = format!("CREATE EXTENSION IF NOT EXISTS {name}");
    if let Some(schema) = &e.schema {
        sql.push_str(&format!(" WITH SCHEMA {}", quote_ident(schema)?));
    }
    if let Some(v) = &e.version {
        sql.push_str(&format!(" VERSION {}", quote_literal(v)?));
    }
    sql.push_str(" CASCADE;");
    Ok(sql)
}

fn names(param: &str, i: usize, name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        return Err(format!("{param}[{i}]: {name:?} is not a name"));
    }
    Ok(())
}

/// `pg_databases` without the ones marked `state: absent`.
pub fn databases(p: &PgParams) -> Result<Vec<Database>, String> {
    let mut out = Vec::new();
    for (i, d) in p.pg_databases.iter().enumerate() {
        if state(&d.extra) == Some("absent") {
            continue;
        }
        out.push(database(i, d).map_err(|e| format!("pg_databases[{i}] ({}): {e}", d.name))?);
    }
    Ok(out)
}

/// A baseline file of the image: `name` is its file stem under
/// `/etc/pigsty/sql/baseline/`, `sql` its text.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Baseline {
    pub name: String,
    pub sql: String,
}

pub const BASELINE_DIR: &str = "/etc/pigsty/sql/baseline";

/// The baseline files of the databases that have one (and are not `absent`).
pub fn baselines(p: &PgParams) -> Vec<Baseline> {
    p.pg_databases
        .iter()
        .enumerate()
        .filter(|(_, d)| state(&d.extra) != Some("absent"))
        .filter_map(|(i, d)| {
            Some(Baseline {
                name: baseline_stem(i, &d.name),
                sql: d.baseline_sql.clone()?,
            })
        })
        .collect()
}

/// `<index>-<name>` with everything but letters, digits, `_` and `-` made `_`: a
/// file name psql's `\i` takes unquoted, unique per database.
fn baseline_stem(i: usize, name: &str) -> String {
    let safe: String = name
        .chars()
        .take(48)
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' => c,
            _ => '_',
        })
        .collect();
    format!("{i:02}-{safe}")
}

fn database(i: usize, d: &PgDatabase) -> Result<Database, String> {
    Ok(Database {
        name: d.name.clone(),
        owner: d.owner.clone(),
        template: d.template.clone(),
        encoding: d.encoding.clone(),
        locale: d.locale.clone(),
        lc_collate: d.lc_collate.clone(),
        lc_ctype: d.lc_ctype.clone(),
        tablespace: d.tablespace.clone(),
        allowconn: d.allowconn.map(|f| if f.0 { "true" } else { "false" }),
        revokeconn: d.revokeconn.is_some_and(|f| f.0),
        connlimit: d.connlimit,
        parameters: settings(&d.parameters)?,
        comment: d.comment.clone(),
        schemas: statements(&d.schemas, schema_sql)?,
        extensions: statements(&d.extensions, extension_sql)?,
        baseline: d
            .baseline_sql
            .as_ref()
            .map(|_| format!("{BASELINE_DIR}/{}.sql", baseline_stem(i, &d.name))),
        connect: psql_connect(&d.name)?,
    })
}

/// The argument of psql's `\connect` for a database name. A bare name would be read
/// as a connection string when it holds `=`, so the name always travels as the
/// `dbname` of a connection string (libpq quoting), inside a psql double-quoted
/// argument, with the other connection settings reused.
pub fn psql_connect(name: &str) -> Result<String, String> {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the database name {name:?} holds the control character {c:?}, which a psql script cannot carry"
        ));
    }
    let conninfo = format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    );
    Ok(format!(
        "-reuse-previous=on \"{}\"",
        conninfo.replace('"', "\"\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_argument() {
        assert_eq!(
            psql_connect("meta").unwrap(),
            "-reuse-previous=on \"dbname='meta'\""
        );
        assert_eq!(
            psql_connect("a'b\"c\\").unwrap(),
            "-reuse-previous=on \"dbname='a\\'b\"\"c\\\\'\""
        );
        assert!(psql_connect("a\nb").is_err());
    }

    #[test]
    fn list_settings_split() {
        assert_eq!(
            setting_values("search_path", "\"$user\", public"),
            ["$user", "public"]
        );
        assert_eq!(
            setting_values("search_path", "\"a,\"\"b\"\"\""),
            ["a,\"b\""]
        );
        assert_eq!(setting_values("work_mem", "64MB, x"), ["64MB, x"]);
    }

    #[test]
    fn schema_and_extension_statements() {
        let sc = |j: &str| schema_sql(&serde_json::from_str(j).unwrap()).unwrap();
        assert_eq!(sc(r#""a\"b""#), r#"CREATE SCHEMA IF NOT EXISTS "a""b";"#);
        assert_eq!(
            sc(r#"{"name": "app", "owner": "o"}"#),
            r#"CREATE SCHEMA IF NOT EXISTS "app" AUTHORIZATION "o";"#
        );
        assert_eq!(
            sc(r#"{"name": "x", "state": "absent"}"#),
            r#"DROP SCHEMA IF EXISTS "x" CASCADE;"#
        );
        let ex = |j: &str| extension_sql(&serde_json::from_str(j).unwrap()).unwrap();
        assert_eq!(
            ex(r#"{"name": "postgis", "schema": "gis", "version": "3.5'"}"#),
            r#"CREATE EXTENSION IF NOT EXISTS "postgis" WITH SCHEMA "gis" VERSION '3.5''' CASCADE;"#
        );
        assert_eq!(
            ex(r#"{"name": "x", "state": "absent"}"#),
            r#"DROP EXTENSION IF EXISTS "x" CASCADE;"#
        );
    }

    #[test]
    fn dates() {
        assert!(check_date("2030-12-31").is_ok());
        assert!(check_date("2030-12-31'; DROP").is_err());
    }
}
