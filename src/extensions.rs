//! Pigsty's extension catalog (`images/extensions.yml`): extension names, Pigsty's
//! package aliases and preload libraries, mapped to each base's Debian packages.
//! One table serves `pg_extensions`, `pg_databases[].extensions` and `pg_libs`, so
//! adding an extension or a base is an edit to the data, not to this code.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const EXTENSIONS: &str = include_str!("../images/extensions.yml");

/// One row of the catalog.
#[derive(Debug, Clone, Deserialize)]
pub struct Extension {
    /// The name `CREATE EXTENSION` takes.
    pub name: String,
    /// Pigsty's package alias (several extensions may share one: postgis).
    pub pkg: String,
    /// Libraries to preload, comma-separated, as pgext records them.
    #[serde(default)]
    pub lib: Option<String>,
    #[serde(default)]
    pub preload: bool,
    /// The package in Pigsty's repository or PGDG (`upstream_repo`), for the
    /// majors of `upstream_pg`.
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub upstream_repo: Option<String>,
    #[serde(default)]
    pub upstream_pg: Vec<u32>,
    /// Per base: `contrib` (inside postgresql-{v}) or a Debian package with `{v}`.
    #[serde(flatten)]
    pub bases: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct File {
    aliases: BTreeMap<String, Vec<String>>,
    categories: Vec<String>,
    extensions: Vec<Extension>,
}

/// Why a name did not resolve: the message says what, `nearest` what was meant.
#[derive(Debug, Clone, PartialEq)]
pub struct Unresolved {
    pub message: String,
    pub nearest: Vec<String>,
}

impl Extension {
    /// Libraries this extension provides, without `$libdir/` and `.so`.
    pub fn libraries(&self) -> impl Iterator<Item = &str> {
        self.lib
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|l| {
                l.trim()
                    .trim_start_matches("$libdir/")
                    .trim_end_matches(".so")
            })
            .filter(|l| !l.is_empty())
    }

    /// The package that gives it to `t`: `Some(None)` when it is part of the
    /// server package (contrib), `None` when none of the node's sources has it.
    pub fn package(&self, t: &Target<'_>) -> Option<Option<String>> {
        let fill = |p: &str| p.replace("{v}", &t.v.to_string());
        let archive = self.bases.get(t.base);
        if t.base_majors.contains(&t.v) {
            match archive.map(String::as_str) {
                Some("contrib") => return Some(None),
                Some(pkg) => return Some(Some(fill(pkg))),
                None => {}
            }
        } else if self.bases.values().any(|p| p == "contrib") {
            // Another major's server comes from PGDG or Pigsty with its contrib.
            return Some(None);
        }
        let repo = self.upstream_repo.as_deref()?;
        let pkg = self.upstream.as_deref()?;
        (self.upstream_pg.contains(&t.v) && t.upstream.contains(&repo)).then(|| Some(fill(pkg)))
    }
}

/// Where a node gets its extension packages: its base's archive (and the majors
/// it ships), the node's major, and which upstream repositories it has
/// (`pigsty`: Pigsty's PostgreSQL repository, `pgdg`).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub base: &'a str,
    pub base_majors: &'a [u32],
    pub v: u32,
    pub upstream: &'a [&'a str],
}

impl Target<'_> {
    /// Which upstream repositories a node's repository list holds.
    pub fn upstream_of(repos: &[crate::model::Repository]) -> Vec<&'static str> {
        let mut out = Vec::new();
        for r in repos {
            let key = r.key.as_deref().unwrap_or_default();
            if r.name.starts_with("pgdg") || key == "pgdg" {
                out.push("pgdg");
            }
            if r.name == "pigsty-pgsql" || (key == "pigsty" && r.module == "pgsql") {
                out.push("pigsty");
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The whole catalog.
pub struct Catalog {
    pub entries: Vec<Extension>,
    /// Pigsty's kernel and tool aliases (`pgsql-main`), packages with `{v}`.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Pigsty's extension categories (`gis` in `pgsql-gis`, `pg18-gis`).
    pub categories: Vec<String>,
}

impl Catalog {
    pub fn get() -> &'static Catalog {
        static CAT: OnceLock<Catalog> = OnceLock::new();
        CAT.get_or_init(|| {
            Catalog::parse(EXTENSIONS).expect("images/extensions.yml is valid (unit test)")
        })
    }

    pub fn parse(text: &str) -> Result<Catalog, String> {
        let root = crate::inventory::yaml::parse(text)
            .map_err(|e| format!("{}:{}: {}", e.loc.line, e.loc.col, e.message))?
            .ok_or("empty extension catalog")?;
        let json = root.to_json_with(&|s: &str| s.to_string());
        let file: File = serde_path_to_error::deserialize(json).map_err(|e| e.to_string())?;
        Ok(Catalog {
            entries: file.extensions,
            aliases: file.aliases,
            categories: file.categories,
        })
    }

    /// Rows an extension name or a Pigsty package alias stands for. A name wins
    /// over an alias (`postgis` is both; the alias would pull in its siblings).
    pub fn lookup(&self, name: &str) -> Vec<&Extension> {
        let by_name: Vec<&Extension> = self.entries.iter().filter(|e| e.name == name).collect();
        if !by_name.is_empty() {
            return by_name;
        }
        self.entries.iter().filter(|e| e.pkg == name).collect()
    }

    /// Packages that give extension (or alias) `name` on `base` for major `v`:
    /// empty for contrib. Unknown names and names the base lacks are errors.
    pub fn packages(&self, name: &str, t: &Target<'_>) -> Result<Vec<String>, Unresolved> {
        let rows = self.lookup(name);
        if rows.is_empty() {
            return Err(Unresolved {
                message: format!("`{name}` is not an extension or package alias Pigsty knows"),
                nearest: self.nearest(name, |e| [e.name.as_str(), e.pkg.as_str()]),
            });
        }
        let mut out = Vec::new();
        for row in rows {
            match row.package(t) {
                Some(Some(pkg)) => out.push(pkg),
                Some(None) => {}
                None => return Err(self.not_packaged(row, t)),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// What one `pg_packages` / `pg_extensions` item installs on `base` for major
    /// `v`: a Pigsty alias (`pgsql-main`, `pg17-main`), an extension name or its
    /// package alias, or a Debian PostgreSQL package named outright.
    pub fn item(&self, item: &str, t: &Target<'_>) -> Result<Vec<String>, Unresolved> {
        let v = t.v;
        let (alias, major) = match item.strip_prefix("pg").and_then(|r| r.split_once('-')) {
            Some((n, rest)) if n.parse::<u32>().is_ok() => {
                (format!("pgsql-{rest}"), n.parse::<u32>().ok())
            }
            _ => (item.to_string(), None),
        };
        let is_alias = self.aliases.contains_key(&alias)
            || alias
                .strip_prefix("pgsql-")
                .is_some_and(|c| self.categories.iter().any(|k| k == c));
        if let Some(m) = major.filter(|m| is_alias && *m != v) {
            return Err(Unresolved {
                message: format!("`{item}` is for PostgreSQL {m}; this node runs {v}"),
                nearest: vec![format!("pgsql-{}", &alias["pgsql-".len()..])],
            });
        }
        if let Some(pkgs) = self.aliases.get(&alias) {
            let pkgs: Vec<String> = pkgs
                .iter()
                .map(|p| p.replace("{v}", &v.to_string()))
                .collect();
            return match pkgs.iter().find(|p| self.lacks(p, t)) {
                Some(p) => Err(Unresolved {
                    message: format!(
                        "`{item}` includes {p}, which none of this node's sources has"
                    ),
                    nearest: Vec::new(),
                }),
                None => Ok(pkgs),
            };
        }
        if is_alias {
            return Err(Unresolved {
                message: format!(
                    "`{item}` is one of Pigsty's extension categories, which stand for dozens of \
                     packages of its own repository; list the extensions you need by name"
                ),
                nearest: Vec::new(),
            });
        }
        if item.starts_with("postgresql-") && !self.lacks(item, t) {
            return Ok(vec![item.to_string()]);
        }
        self.packages(item, t)
    }

    /// Whether `pkg`, a PostgreSQL extension package, is one no source of `t` has.
    fn lacks(&self, pkg: &str, t: &Target<'_>) -> bool {
        let Some(rest) = pkg.strip_prefix("postgresql-") else {
            return false;
        };
        // postgresql-17, postgresql-client-17, postgresql-plperl-17: the server's own.
        if rest
            .split('-')
            .next()
            .is_none_or(|n| n.parse::<u32>().is_err())
            || !rest.contains('-')
        {
            return false;
        }
        !self.offered(t).contains(pkg)
    }

    /// Every package the catalog's extensions give on target `t`, worked out once per
    /// target and process: a fleet has a handful of targets and checks thousands of
    /// packages against them (`plan --all` of 1,000 nodes).
    fn offered(&self, t: &Target<'_>) -> std::sync::Arc<std::collections::HashSet<String>> {
        type Memo = std::sync::Mutex<
            std::collections::HashMap<String, std::sync::Arc<std::collections::HashSet<String>>>,
        >;
        static MEMO: OnceLock<Memo> = OnceLock::new();
        // Only the process-wide catalog is memoised (a test may parse its own).
        let global = std::ptr::eq(self, Catalog::get());
        let key = format!("{}|{:?}|{}|{:?}", t.base, t.base_majors, t.v, t.upstream);
        let memo = MEMO.get_or_init(Memo::default);
        if global && let Some(set) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return set.clone();
        }
        let set: std::sync::Arc<std::collections::HashSet<String>> = std::sync::Arc::new(
            self.entries
                .iter()
                .filter_map(|e| e.package(t).flatten())
                .collect(),
        );
        if global {
            memo.lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, set.clone());
        }
        set
    }

    /// The package that provides preload library `lib` on `base` (None: contrib).
    pub fn library(&self, lib: &str, t: &Target<'_>) -> Result<Option<String>, Unresolved> {
        let lib = lib
            .trim()
            .trim_start_matches("$libdir/")
            .trim_end_matches(".so");
        let row = self
            .entries
            .iter()
            .find(|e| e.libraries().any(|l| l == lib))
            .or_else(|| self.entries.iter().find(|e| e.name == lib));
        let Some(row) = row else {
            return Err(Unresolved {
                message: format!("no extension in Pigsty's catalog provides library `{lib}`"),
                nearest: self.nearest(lib, |e| {
                    let first = e.libraries().next().unwrap_or(e.name.as_str());
                    [first, e.name.as_str()]
                }),
            });
        };
        row.package(t).ok_or_else(|| self.not_packaged(row, t))
    }

    fn not_packaged(&self, row: &Extension, t: &Target<'_>) -> Unresolved {
        let (base, v) = (t.base, t.v);
        let elsewhere: Vec<&str> = row
            .bases
            .keys()
            .map(String::as_str)
            .filter(|b| *b != base)
            .collect();
        let mut why = Vec::new();
        if row.bases.contains_key(base) {
            why.push(format!(
                "{base}'s archive has it for PostgreSQL {:?} only",
                t.base_majors
            ));
        } else if !elsewhere.is_empty() {
            why.push(format!(
                "the archive of {} has it, {base}'s does not",
                elsewhere.join(", ")
            ));
        }
        match (&row.upstream_repo, row.upstream_pg.contains(&v)) {
            (Some(repo), true) => why.push(format!(
                "{} has it: add the `pgsql` repository module (node_repo_modules)",
                if repo == "pgdg" {
                    "PGDG"
                } else {
                    "Pigsty's repository"
                }
            )),
            (Some(_), false) => why.push(format!(
                "upstream packages it for PostgreSQL {:?}, not {v}",
                row.upstream_pg
            )),
            (None, _) => {}
        }
        if why.is_empty() {
            why.push("no repository this tool knows packages it".into());
        }
        Unresolved {
            message: format!(
                "extension `{}` (package alias `{}`) is in none of this node's sources for \
                 PostgreSQL {v}: {}",
                row.name,
                row.pkg,
                why.join("; ")
            ),
            nearest: Vec::new(),
        }
    }

    /// Up to three known names closest to `name` (edit distance, then order).
    fn nearest<'a, const N: usize>(
        &'a self,
        name: &str,
        keys: impl Fn(&'a Extension) -> [&'a str; N],
    ) -> Vec<String> {
        let mut scored: Vec<(usize, &str)> = self
            .entries
            .iter()
            .flat_map(&keys)
            .map(|k| (crate::diag::edit_distance(name, k), k))
            .filter(|(d, k)| *d <= name.len().max(k.len()) / 2)
            .collect();
        scored.sort();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored
            .into_iter()
            .take(3)
            .map(|(_, k)| k.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_parses_with_unique_names_and_known_bases() {
        let c = Catalog::get();
        assert!(c.entries.len() > 500, "{}", c.entries.len());
        let mut names: Vec<&str> = c.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len(), "extension names are unique");
        for e in &c.entries {
            for base in e.bases.keys() {
                assert!(
                    crate::catalog::Catalog::named(base).is_some(),
                    "{}: unknown base {base}",
                    e.name
                );
            }
        }
    }

    const D13: Target<'static> = Target {
        base: "debian13",
        base_majors: &[17],
        v: 17,
        upstream: &[],
    };
    const D12: Target<'static> = Target {
        base: "debian12",
        base_majors: &[15],
        v: 15,
        upstream: &[],
    };

    #[test]
    fn names_aliases_and_libraries_resolve_per_base() {
        let c = Catalog::get();
        assert_eq!(
            c.packages("postgis", &D13).unwrap(),
            ["postgresql-17-postgis-3"]
        );
        // `vector` is the extension, `pgvector` Pigsty's alias for its package.
        assert_eq!(
            c.packages("vector", &D13).unwrap(),
            ["postgresql-17-pgvector"]
        );
        assert_eq!(
            c.packages("pgvector", &D13).unwrap(),
            ["postgresql-17-pgvector"]
        );
        assert_eq!(
            c.packages("pg_stat_statements", &D12).unwrap(),
            Vec::<String>::new()
        );
        // Debian 12 has no pgvector in main; Debian 13 does.
        let e = c.packages("vector", &D12).unwrap_err();
        assert!(e.message.contains("debian13"), "{}", e.message);
        let e = c.packages("postgsi", &D13).unwrap_err();
        assert!(e.nearest.iter().any(|n| n == "postgis"), "{e:?}");

        assert_eq!(
            c.library("timescaledb", &D13).unwrap().as_deref(),
            Some("postgresql-17-timescaledb")
        );
        assert_eq!(
            c.library("pg_cron", &D13).unwrap().as_deref(),
            Some("postgresql-17-cron")
        );
        assert_eq!(c.library("auto_explain", &D13).unwrap(), None);
        assert_eq!(c.library("$libdir/passwordcheck", &D12).unwrap(), None);
        let e = c.library("pg_stat_statement", &D13).unwrap_err();
        assert_eq!(
            e.nearest.first().map(String::as_str),
            Some("pg_stat_statements"),
            "{e:?}"
        );
    }

    #[test]
    fn upstream_repositories_give_other_majors_and_what_debian_lacks() {
        let c = Catalog::get();
        let pg18 = Target {
            v: 18,
            upstream: &["pgdg", "pigsty"],
            ..D13
        };
        // PGDG's and Pigsty's names, not Debian's: timescaledb is Pigsty's -tsl build.
        assert_eq!(
            c.packages("timescaledb", &pg18).unwrap(),
            ["postgresql-18-timescaledb-tsl"]
        );
        assert_eq!(
            c.packages("postgis", &pg18).unwrap(),
            ["postgresql-18-postgis-3"]
        );
        assert_eq!(
            c.packages("pg_stat_statements", &pg18).unwrap(),
            Vec::<String>::new()
        );
        // On the archive's own major, Debian's package wins; what it lacks comes from Pigsty.
        let pg17 = Target {
            upstream: &["pigsty"],
            ..D13
        };
        assert_eq!(
            c.packages("timescaledb", &pg17).unwrap(),
            ["postgresql-17-timescaledb"]
        );
        assert_eq!(
            c.packages("pg_net", &pg17).unwrap(),
            ["postgresql-17-pg-net"]
        );
        // Without the repository: refused, saying which module would give it.
        let e = c.packages("pg_net", &D13).unwrap_err();
        assert!(
            e.message.contains("`pgsql` repository module"),
            "{}",
            e.message
        );
        assert_eq!(c.item("pgsql-main", &pg18).unwrap().len(), 8);
    }

    #[test]
    fn pigsty_aliases_expand_for_the_nodes_major_and_base() {
        let c = Catalog::get();
        let main = c.item("pgsql-main", &D13).unwrap();
        assert!(
            main.contains(&"postgresql-17-pgvector".to_string()),
            "{main:?}"
        );
        assert_eq!(c.item("pg17-main", &D13).unwrap(), main);
        let e = c.item("pg18-main", &D13).unwrap_err();
        assert!(e.message.contains("PostgreSQL 18"), "{}", e.message);
        // Debian 12's archive has no pgvector: said, not dropped.
        let e = c.item("pgsql-main", &D12).unwrap_err();
        assert!(
            e.message.contains("postgresql-15-pgvector"),
            "{}",
            e.message
        );
        let e = c.item("pg17-gis", &D13).unwrap_err();
        assert!(e.message.contains("categories"), "{}", e.message);
        assert_eq!(
            c.item("postgresql-17-cron", &D13).unwrap(),
            ["postgresql-17-cron"]
        );
        assert_eq!(
            c.item("pgvector", &D13).unwrap(),
            ["postgresql-17-pgvector"]
        );
        assert!(
            c.item("pgsql-common", &D12)
                .unwrap()
                .contains(&"patroni".to_string())
        );
    }
}
