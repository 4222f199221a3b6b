//! A node's package repositories, the way Pigsty reads them: `repo_upstream` (or,
//! unset, the base's list in `images/<base>.yml`) filtered by the modules of
//! `node_repo_modules`, where `local` (Pigsty's default, its admin node's local
//! repository) stands for the modules of `repo_modules`, and by the entries'
//! `releases` and `arch`. The base's own archive is always a source.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use super::reader::{Step, VarReader};
use crate::catalog::Catalog;
use crate::diag::Finding;
use crate::model::{NodeParams, Repository};

/// The node's repositories, the base's archive first; `None` after reporting a
/// problem at its line.
pub(super) fn resolve(
    r: &mut VarReader<'_>,
    base: &Catalog,
    p: &NodeParams,
) -> Option<Vec<Repository>> {
    let modules = modules(&p.node_repo_modules, &p.repo_modules);
    let candidates = match &p.repo_upstream {
        None => base.repositories.clone(),
        Some(entries) => upstream(r, base, entries, &p.region)?,
    };
    let mut out: Vec<Repository> = Vec::new();
    // The distribution's archive: an image cannot be built without it.
    if let Some(archive) = base.repositories.iter().find(|x| x.name == "base") {
        out.push(archive.clone());
    }
    for m in &modules {
        let of_module: Vec<&Repository> = candidates.iter().filter(|x| &x.module == m).collect();
        if candidates.is_empty() {
            let loc = r.loc("repo_upstream");
            r.findings.push(Finding::error(
                r.file,
                loc,
                "repo_upstream",
                format!(
                    "repo_upstream has no entry for {} (Debian {}, x86_64): its `releases` \
                     and `arch` name other systems",
                    base.name, base.release
                ),
            ));
            return None;
        }
        if of_module.is_empty() {
            let loc = r.loc("node_repo_modules");
            let have: BTreeSet<&str> = candidates.iter().map(|x| x.module.as_str()).collect();
            r.findings.push(
                Finding::error(
                    r.file,
                    loc,
                    "node_repo_modules",
                    format!(
                        "repository module `{m}` has no repository for {} (modules there: {})",
                        base.name,
                        have.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                )
                .with_help("add its repositories to repo_upstream, or drop the module"),
            );
            return None;
        }
        for repo in of_module {
            if !out
                .iter()
                .any(|o| o.uri == repo.uri && o.suite == repo.suite)
            {
                out.push(repo.clone());
            }
        }
    }
    Some(out)
}

/// `node` and `local,pgsql`: the modules named, `local` expanded to `repo_modules`.
fn modules(node_repo_modules: &str, repo_modules: &str) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split([',', ' '])
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut out: Vec<String> = Vec::new();
    for m in split(node_repo_modules) {
        let expanded = if m == "local" {
            split(repo_modules)
        } else {
            vec![m]
        };
        for e in expanded {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

/// Pigsty's `repo_upstream` entries that apply to this base, each read into a
/// repository; a malformed entry is an error at its line.
fn upstream(
    r: &mut VarReader<'_>,
    base: &Catalog,
    entries: &[Json],
    region: &str,
) -> Option<Vec<Repository>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, e) in entries.iter().enumerate() {
        match entry(e, base, region) {
            Ok(Some(repo)) => out.push(repo),
            Ok(None) => {}
            Err(message) => {
                ok = false;
                let loc = r.loc_in("repo_upstream", &[Step::Item(i)]);
                r.findings.push(Finding::error(
                    r.file,
                    loc,
                    format!("repo_upstream[{i}]"),
                    message,
                ));
            }
        }
    }
    ok.then_some(out)
}

/// One entry: `None` when its `releases` or `arch` leave this base out.
fn entry(e: &Json, base: &Catalog, region: &str) -> Result<Option<Repository>, String> {
    let field = |k: &str| e.get(k).and_then(Json::as_str).map(str::to_string);
    let name = field("name").ok_or("a repository needs a `name`")?;
    let module = field("module").ok_or(format!("repository `{name}` needs a `module`"))?;
    if let Some(releases) = e.get("releases").and_then(Json::as_array)
        && !releases
            .iter()
            .any(|v| v.as_u64() == Some(u64::from(base.release)))
    {
        return Ok(None);
    }
    if let Some(arch) = e.get("arch").and_then(Json::as_array)
        && !arch.iter().any(|a| a.as_str() == Some("x86_64"))
    {
        return Ok(None);
    }
    let url = match e.get("baseurl") {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Object(m)) => m
            .get(region)
            .or_else(|| m.get("default"))
            .and_then(Json::as_str)
            .ok_or(format!("repository `{name}`: baseurl has no `default`"))?
            .to_string(),
        _ => return Err(format!("repository `{name}` needs a `baseurl`")),
    };
    let url = url
        .replace("${distro_codename}", &base.suite)
        .replace("${distro_name}", "debian");
    let mut words = url.split_whitespace();
    let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
        return Err(format!(
            "repository `{name}`: baseurl `{url}` is not `URI SUITE [COMPONENT...]`"
        ));
    };
    let known = base.repositories.iter().find(|x| x.name == name);
    Ok(Some(Repository {
        name: name.clone(),
        module,
        uri: uri.trim_end_matches('/').to_string(),
        suite: suite.to_string(),
        components: words.map(str::to_string).collect(),
        key: field("key")
            .or_else(|| known.and_then(|k| k.key.clone()))
            .or_else(|| key_by_name(&name)),
        // Ours: an entry may say which majors it offers (build-image checks its index).
        pg_versions: match e.get("pg_versions").and_then(Json::as_array) {
            Some(v) => v
                .iter()
                .filter_map(Json::as_u64)
                .filter_map(|n| u32::try_from(n).ok())
                .collect(),
            None => known.map(|k| k.pg_versions.clone()).unwrap_or_default(),
        },
    }))
}

/// Pigsty's repository names say whose key signs them.
fn key_by_name(name: &str) -> Option<String> {
    if name.starts_with("pgdg") {
        Some("pgdg".into())
    } else if name.starts_with("pigsty-") {
        Some("pigsty".into())
    } else if matches!(name, "base" | "updates" | "security" | "backports") {
        Some("debian".into())
    } else {
        None
    }
}

/// PostgreSQL majors the repositories offer, newest last.
pub(super) fn offered(repos: &[Repository]) -> BTreeSet<u32> {
    repos
        .iter()
        .flat_map(|r| r.pg_versions.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_means_the_modules_of_repo_modules() {
        assert_eq!(
            modules("local", "infra,node,pgsql"),
            ["infra", "node", "pgsql"]
        );
        assert_eq!(modules("node, pgsql", "infra"), ["node", "pgsql"]);
        assert_eq!(modules("local,extra", "node"), ["node", "extra"]);
    }

    #[test]
    fn pigsty_entries_read_for_the_base() {
        let base = Catalog::debian13();
        let e: Json = serde_json::from_str(r#"{ "name": "pgdg", "module": "pgsql", "releases": [11,12,13], "arch": ["x86_64"],
            "baseurl": { "default": "http://apt.postgresql.org/pub/repos/apt/ ${distro_codename}-pgdg main", "china": "https://mirrors.example/apt/ ${distro_codename}-pgdg main" } }"#).unwrap();
        let repo = entry(&e, base, "default").unwrap().unwrap();
        assert_eq!(
            repo.deb_line(),
            "deb http://apt.postgresql.org/pub/repos/apt trixie-pgdg main"
        );
        assert_eq!(repo.key.as_deref(), Some("pgdg"));
        assert!(repo.pg_versions.contains(&18));
        let china = entry(&e, base, "china").unwrap().unwrap();
        assert!(
            china.uri.starts_with("https://mirrors.example"),
            "{china:?}"
        );
        // An entry for other releases is not this base's.
        let old: Json = serde_json::from_str(
            r#"{ "name": "x", "module": "node", "releases": [11], "baseurl": "http://x ./" }"#,
        )
        .unwrap();
        assert_eq!(entry(&old, base, "default").unwrap(), None);
        let bad: Json =
            serde_json::from_str(r#"{ "name": "x", "module": "node", "baseurl": "http://x" }"#)
                .unwrap();
        assert!(
            entry(&bad, base, "default")
                .unwrap_err()
                .contains("URI SUITE")
        );
    }
}
