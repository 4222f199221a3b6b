//! MINIO context: the identical volume list, members, this node's data directories,
//! and bucket/user setup for the agent.

use serde_json::{Value, json};

use crate::model::{Fleet, Node};
use crate::plan::node_json::{MinioBucket, MinioInfo, MinioMember, MinioUser};

/// At most this many directories from one `minio_data` pattern: a typo such as
/// `/data{1...10000}` is an error rather than ten thousand tmpfiles lines.
const MAX_DATA_DIRS: usize = 256;

/// Template context for MinIO files (`minio` in templates); null on other nodes.
/// `invalid` holds a message when `minio_data` cannot be expanded; the templates
/// that need the directories refuse to render with it.
pub fn context(fleet: &Fleet, node: &Node) -> Value {
    let Some(m) = &node.minio else {
        return Value::Null;
    };
    let members = fleet.minio_members(&m.cluster);
    let first = members.first().is_some_and(|f| f.ip == node.ip);
    let (data_dirs, invalid) = match data_dirs(&m.params.minio_data) {
        Ok(dirs) => (dirs, None),
        Err(e) => (
            Vec::new(),
            Some(format!("minio_data {:?}: {e}", m.params.minio_data)),
        ),
    };
    json!({
        "cluster": m.cluster,
        "name": m.name,
        "seq": m.seq,
        "first": first,
        "volumes": fleet.minio_volumes(&m.cluster),
        "data_dirs": data_dirs,
        "invalid": invalid,
        "members": members.iter().filter_map(|x| {
            let mm = x.minio.as_ref()?;
            Some(json!({ "name": mm.name, "seq": mm.seq, "ip": x.ip.to_string(), "host": mm.params.minio_node }))
        }).collect::<Vec<_>>(),
    })
}

/// What the first-boot agent needs: endpoints, root keys, buckets and users. The data
/// directories are empty when `minio_data` cannot be expanded: the render of the
/// files that need them fails first.
pub fn agent(fleet: &Fleet, node: &Node) -> Option<MinioInfo> {
    let m = node.minio.as_ref()?;
    let p = &m.params;
    let members = fleet.minio_members(&m.cluster);
    Some(MinioInfo {
        cluster: m.cluster.clone(),
        name: m.name.clone(),
        seq: m.seq,
        first: members.first().is_some_and(|f| f.ip == node.ip),
        port: p.minio_port,
        server_bin: p.minio_server_bin.clone(),
        access_key: p.minio_access_key.clone(),
        secret_key: p.minio_secret_key.clone(),
        volumes: fleet.minio_volumes(&m.cluster).unwrap_or_default(),
        members: members
            .iter()
            .filter_map(|x| {
                let mm = x.minio.as_ref()?;
                Some(MinioMember {
                    name: mm.name.clone(),
                    seq: mm.seq,
                    ip: x.ip.to_string(),
                    host: mm.params.minio_node.clone(),
                })
            })
            .collect(),
        data_dirs: data_dirs(&p.minio_data).unwrap_or_default(),
        buckets: p
            .minio_buckets
            .iter()
            .map(|b| MinioBucket {
                name: b.name.clone(),
                versioning: b.versioning.map(|f| f.0),
                lock: b.lock.map(|f| f.0),
            })
            .collect(),
        users: p
            .minio_users
            .iter()
            .map(|u| MinioUser {
                access_key: u.access_key.clone(),
                secret_key: u.secret_key.clone(),
                policy: u.policy.clone(),
            })
            .collect(),
    })
}

/// The local directories a `minio_data` value names: `/data/minio` is itself,
/// `/data{1...2}` is `/data1` and `/data2`. Each must be an absolute path that a
/// tmpfiles.d line can carry (no whitespace).
pub fn data_dirs(minio_data: &str) -> Result<Vec<String>, String> {
    let dirs = expand_ellipses(minio_data)?;
    if dirs.len() > MAX_DATA_DIRS {
        return Err(format!(
            "expands to {} directories, more than {MAX_DATA_DIRS}",
            dirs.len()
        ));
    }
    if let Some(bad) = dirs
        .iter()
        .find(|d| !d.starts_with('/') || d.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(format!(
            "{bad:?} is not an absolute path without whitespace"
        ));
    }
    Ok(dirs)
}

/// Expand MinIO's ellipsis notation: every `{A...B}` becomes each value from A to B,
/// left to right (`/d{1...2}/x{1...2}` → `/d1/x1 /d1/x2 /d2/x1 /d2/x2`). As in MinIO,
/// a bound written with a leading zero sets the width (`{01...12}`), bounds that are
/// not decimal are lower-case hexadecimal (`{a...f}`), and a brace outside an
/// ellipsis is an error.
pub fn expand_ellipses(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err("a `}` without its `{`".into());
        }
        return Ok(vec![pattern.to_string()]);
    };
    let prefix = &pattern[..open];
    if prefix.contains('}') {
        return Err("a `}` without its `{`".into());
    }
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or("a `{` without its `}`")?;
    let values = ellipsis_range(&pattern[open + 1..close])?;
    let rest = expand_ellipses(&pattern[close + 1..])?;
    if values.len().saturating_mul(rest.len()) > MAX_DATA_DIRS * MAX_DATA_DIRS {
        return Err("the ranges expand to too many paths".into());
    }
    Ok(values
        .iter()
        .flat_map(|v| rest.iter().map(move |r| format!("{prefix}{v}{r}")))
        .collect())
}

/// `1...4`, `01...16` (zero-padded), `a...f` (hexadecimal) → the values, in order.
fn ellipsis_range(body: &str) -> Result<Vec<String>, String> {
    let bad = || format!("`{{{body}}}` is not a range like {{1...4}}");
    let (a, b) = body.split_once("...").ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    if !digits(a) || !digits(b) {
        return Err(bad());
    }
    let decimal = (a.parse::<u64>(), b.parse::<u64>());
    let (start, end, hex) = match decimal {
        (Ok(s), Ok(e)) => (s, e, false),
        _ => {
            let s = u64::from_str_radix(a, 16).map_err(|_| bad())?;
            let e = u64::from_str_radix(b, 16).map_err(|_| bad())?;
            (s, e, true)
        }
    };
    if start > end {
        return Err(format!("`{{{body}}}` starts above its end"));
    }
    if end - start >= MAX_DATA_DIRS as u64 {
        return Err(format!("`{{{body}}}` has more than {MAX_DATA_DIRS} values"));
    }
    let width = if a.len() > 1 && a.starts_with('0') {
        a.len()
    } else {
        0
    };
    Ok((start..=end)
        .map(|i| match hex {
            true => format!("{i:0width$x}"),
            false => format!("{i:0width$}"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(p: &str) -> Vec<String> {
        expand_ellipses(p).unwrap()
    }

    #[test]
    fn plain_paths_are_themselves() {
        assert_eq!(data_dirs("/data/minio").unwrap(), ["/data/minio"]);
    }

    #[test]
    fn ellipsis_expands_in_order() {
        assert_eq!(expand("/data{1...2}"), ["/data1", "/data2"]);
        assert_eq!(
            expand("/mnt/d{1...2}/x{3...4}"),
            ["/mnt/d1/x3", "/mnt/d1/x4", "/mnt/d2/x3", "/mnt/d2/x4"]
        );
        assert_eq!(expand("/d{08...10}"), ["/d08", "/d09", "/d10"]);
        assert_eq!(expand("/d{a...c}"), ["/da", "/db", "/dc"]);
        assert_eq!(expand("/d{9...b}"), ["/d9", "/da", "/db"]);
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for bad in [
            "/d{1..2}",
            "/d{2...1}",
            "/d{1...2",
            "/d1...2}",
            "/d{x...y}",
            "/d{-1...2}",
            "/d{+1...2}",
            "/d{A...F}",
            "/d{}",
            "/d{0...100000}",
        ] {
            assert!(expand_ellipses(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_bad_range_fails_the_render_naming_the_parameter() {
        let inv = "all:\n  children:\n    minio:\n      hosts: { 10.10.10.10: { minio_seq: 1 } }\n      vars: { minio_cluster: minio, minio_data: '/data{2...1}' }\n";
        let loaded = crate::inventory::load_str("t.yml", inv).unwrap();
        let node = &loaded.fleet.nodes[0];
        let err = crate::compile::compile(&loaded.fleet, node).unwrap_err();
        assert!(err.file.contains("tmpfiles.d"), "{err}");
        assert!(err.reason.contains("minio_data"), "{err}");
    }

    #[test]
    fn data_dirs_must_be_absolute() {
        assert!(data_dirs("data{1...2}").is_err());
        assert!(data_dirs("/my data").is_err());
        assert!(data_dirs("/d{0...255}").is_ok());
        assert!(
            data_dirs("/d{0...15}/x{0...16}").is_err(),
            "272 directories"
        );
    }
}
