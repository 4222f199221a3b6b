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
//! | `redis_str` | redis.conf / sentinel.conf arguments | bare if plain, else a double-quoted string with redis escapes |
//! | `unit_arg` | a word of a systemd `ExecStart=` line | `%` and `$` doubled, quoted unless plain |

use std::collections::HashMap;

use tera::{Error, Tera, Value};

pub fn register(tera: &mut Tera) {
    tera.register_filter("yaml", yaml);
    tera.register_filter("ini", ini);
    tera.register_filter("env", env);
    tera.register_filter("sql_literal", sql_literal);
    tera.register_filter("sql_ident", sql_ident);
    tera.register_filter("pg_value", pg_value);
    tera.register_filter("redis_str", redis_str);
    tera.register_filter("unit_arg", unit_arg);
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
    yaml_scalar(value)
        .map(Value::String)
        .map_err(|e| Error::msg(format!("`yaml`: {e}")))
}

/// The `yaml` filter's text, for contexts that format lines in Rust.
pub fn yaml_scalar(value: &Value) -> Result<String, serde_json::Error> {
    serde_json::to_string(value).map(|json| escape_unprintable(&json))
}

/// PyYAML (Patroni's parser) rejects DEL, the C1 controls and U+FFFE/U+FFFF even inside
/// quotes, and folds U+0085 into a line break. serde_json leaves them raw; as `\uXXXX`
/// escapes (they only occur inside strings) both JSON and YAML read them back.
fn escape_unprintable(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if matches!(c, '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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

/// `s` as an SQL string literal (`'it''s'`); the `sql_literal` filter.
pub fn quote_literal(s: &str) -> Result<String, String> {
    if s.contains('\0') {
        return Err("`sql_literal`: NUL cannot appear in SQL text".into());
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// `s` as a quoted SQL identifier (`"a""b"`); the `sql_ident` filter.
pub fn quote_ident(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('\0') {
        return Err(format!("`sql_ident`: {s:?} is not a valid identifier"));
    }
    Ok(format!("\"{}\"", s.replace('"', "\"\"")))
}

pub fn sql_literal(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "sql_literal")?;
    quote_literal(&s).map(Value::String).map_err(Error::msg)
}

pub fn sql_ident(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "sql_ident")?;
    quote_ident(&s).map(Value::String).map_err(Error::msg)
}

pub fn pg_value(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "pg_value")?;
    no_controls(&s, "pg_value")?;
    Ok(Value::String(format!(
        "'{}'",
        s.replace('\\', "\\\\").replace('\'', "''")
    )))
}

/// A redis config argument. Redis splits config lines like a shell (`sdssplitargs`):
/// a plain token is written as is; anything else is double-quoted with `\\`, `\"`
/// and `\xHH` escapes, which redis reads back byte for byte.
pub fn redis_str(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "redis_str")?;
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !"\"'\\".contains(c));
    if plain {
        return Ok(Value::String(s));
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", c as u8)),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(Value::String(out))
}

/// One word of a systemd command line (`ExecStart=`). `%` (specifiers) and `$`
/// (environment) are doubled so systemd passes them through; a word with anything
/// but plain path characters, or starting with one of systemd's prefix characters
/// (`-@:+!`), is double-quoted with `\\` and `\"` escaped.
pub fn unit_arg(value: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = text(value, "unit_arg")?;
    no_controls(&s, "unit_arg")?;
    let plain = !s.is_empty()
        && !s.starts_with(['-', '@', ':', '+', '!'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,=:@%$".contains(c));
    let mut out = String::with_capacity(s.len() + 2);
    if !plain {
        out.push('"');
    }
    for c in s.chars() {
        match c {
            '%' | '$' => out.push(c),
            '"' | '\\' if !plain => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    if !plain {
        out.push('"');
    }
    Ok(Value::String(out))
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
            "del\u{7f} nel\u{85} c1\u{9f} nonchar\u{fffe}",
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

    #[test]
    fn redis_quotes_only_when_needed() {
        assert_eq!(run(redis_str, "redis.ms").unwrap(), "redis.ms");
        assert_eq!(run(redis_str, "").unwrap(), "\"\"");
        assert_eq!(run(redis_str, "a b\"c\\").unwrap(), r#""a b\"c\\""#);
        assert_eq!(run(redis_str, "it's\n").unwrap(), r#""it's\x0a""#);
    }

    #[test]
    fn unit_args_escape_specifiers_and_prefixes() {
        assert_eq!(
            run(unit_arg, "/usr/local/bin/minio").unwrap(),
            "/usr/local/bin/minio"
        );
        assert_eq!(run(unit_arg, "/opt/a%i$x").unwrap(), "/opt/a%%i$$x");
        assert_eq!(
            run(unit_arg, "/opt/my dir/b\"q").unwrap(),
            r#""/opt/my dir/b\"q""#
        );
        assert_eq!(run(unit_arg, "-rf").unwrap(), "\"-rf\"");
        assert!(run(unit_arg, "a\nb").is_err());
    }
}
