//! Escaping filters: the only way values reach structured files. Each one either
//! produces a token the target format reads back as exactly the value, or fails
//! with a message naming the value (a newline in an INI value cannot be written).
//!
//! | filter | for | output |
//! |---|---|---|
//! | `json_encode` (tera) / `yaml` | YAML, JSON | a JSON scalar: `"off"` stays a string, quotes and colons are escaped |
//! | `ini` | pgbouncer, pgbackrest, haproxy, redis, chrony values | the value, refused if it holds a control character |
//! | `env` | systemd `EnvironmentFile=`, `/etc/default/*` | a double-quoted, escaped string |
//! | `sql_literal` / `sql_ident` | SQL | `'it''s'` / `"My Table"` |
//! | `pg_value` | postgresql.conf style values | a single-quoted, escaped string |

use std::collections::HashMap;

use tera::{Error, Tera, Value};

pub fn register(tera: &mut Tera) {
    tera.register_filter("yaml", yaml);
    tera.register_filter("ini", ini);
    tera.register_filter("env", env);
    tera.register_filter("sql_literal", sql_literal);
    tera.register_filter("sql_ident", sql_ident);
    tera.register_filter("pg_value", pg_value);
}

/// The value as text: strings as they are, numbers and booleans as written.
fn text(value: &Value, filter: &str) -> tera::Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(Error::msg(format!(
            "`{filter}` takes a scalar, got {other}"
        ))),
    }
}

fn no_controls(s: &str, filter: &str) -> tera::Result<()> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(Error::msg(format!(
            "`{filter}`: the value {s:?} holds the control character {c:?}, which this file format cannot carry"
        ))),
        None => Ok(()),
    }
}

/// YAML flow scalar (a JSON value, which every YAML parser reads back unchanged).
pub fn yaml(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    serde_json::to_string(value)
        .map(Value::String)
        .map_err(|e| Error::msg(format!("`yaml`: {e}")))
}

pub fn ini(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "ini")?;
    no_controls(&s, "ini")?;
    Ok(Value::String(s))
}

pub fn env(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "env")?;
    no_controls(&s, "env")?;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(Value::String(out))
}

pub fn sql_literal(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "sql_literal")?;
    if s.contains('\0') {
        return Err(Error::msg("`sql_literal`: NUL cannot appear in SQL text"));
    }
    Ok(Value::String(format!("'{}'", s.replace('\'', "''"))))
}

pub fn sql_ident(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "sql_ident")?;
    if s.is_empty() || s.contains('\0') {
        return Err(Error::msg(format!(
            "`sql_ident`: {s:?} is not a valid identifier"
        )));
    }
    Ok(Value::String(format!("\"{}\"", s.replace('"', "\"\""))))
}

pub fn pg_value(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "pg_value")?;
    no_controls(&s, "pg_value")?;
    Ok(Value::String(format!(
        "'{}'",
        s.replace('\\', "\\\\").replace('\'', "''")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        f: fn(&Value, &HashMap<String, Value>) -> tera::Result<Value>,
        v: &str,
    ) -> tera::Result<String> {
        f(&Value::String(v.into()), &HashMap::new()).map(|v| v.as_str().unwrap().to_string())
    }

    #[test]
    fn yaml_round_trips_hostile_strings() {
        for s in [
            "off",
            "yes",
            "a: b",
            "it's \"q\"",
            "line\nbreak",
            "#x",
            "- x",
            "{a}",
            "@x",
            "~",
            "null",
            "1e3",
        ] {
            let out = run(yaml, s).unwrap();
            let back = crate::inventory::yaml::parse(&format!("k: {out}\n"))
                .unwrap()
                .unwrap();
            assert_eq!(
                back.get("k").unwrap().scalar_text().as_deref(),
                Some(s),
                "{s} -> {out}"
            );
        }
    }

    #[test]
    fn env_quotes_shell_specials() {
        assert_eq!(run(env, "a$b\"c`d\\").unwrap(), r#""a\$b\"c\`d\\""#);
        assert!(run(env, "a\nb").is_err());
    }

    #[test]
    fn sql_and_ini() {
        assert_eq!(run(sql_literal, "it's").unwrap(), "'it''s'");
        assert_eq!(run(sql_ident, "my \"t\"").unwrap(), "\"my \"\"t\"\"\"");
        assert!(run(ini, "x\ny").is_err());
        assert_eq!(run(pg_value, "a'b").unwrap(), "'a''b'");
    }
}
