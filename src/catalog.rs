//! Base images and their module → package catalogs (`images/<base>.yml`). A node picks
//! its base with `node_base`; adding a base is adding a file to [`BASES`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::model::{Module, Repository};

/// Every base this tool builds, by name; the first is the default.
const BASES: &[(&str, &str)] = &[
    ("debian13", include_str!("../images/debian13.yml")),
    ("debian12", include_str!("../images/debian12.yml")),
];

/// The base a node gets when its inventory does not set `node_base`.
pub const DEFAULT_BASE: &str = BASES[0].0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub name: String,
    pub suite: String,
    pub mirror: String,
    pub architecture: String,
    pub components: Vec<String>,
    /// Debian's release number (`13`), as Pigsty's `releases` lists name it.
    pub release: u32,
    /// Repositories by Pigsty's names, for inventories without `repo_upstream`.
    pub repositories: Vec<Repository>,
    pub base: Vec<String>,
    pub pg_versions: Vec<u32>,
    pub modules: BTreeMap<Module, Vec<String>>,
    /// Packages of optional features, by name (`pg_vip`: vip-manager), added to a
    /// node that turns the feature on.
    #[serde(default)]
    pub features: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// Every base compiled into the binary, the default first.
    pub fn all() -> &'static [Catalog] {
        static ALL: OnceLock<Vec<Catalog>> = OnceLock::new();
        ALL.get_or_init(|| {
            BASES
                .iter()
                .map(|(name, text)| {
                    let c = Catalog::parse(text)
                        .expect("images/*.yml are valid (checked by a unit test)");
                    assert_eq!(&c.name, name, "images/{name}.yml names itself");
                    c
                })
                .collect()
        })
    }

    /// The base called `name` (`debian13`, `debian12`).
    pub fn named(name: &str) -> Option<&'static Catalog> {
        Catalog::all().iter().find(|c| c.name == name)
    }

    /// Names of every base, the default first.
    pub fn names() -> Vec<&'static str> {
        BASES.iter().map(|(n, _)| *n).collect()
    }

    /// The Debian 12 catalog (PostgreSQL 15).
    pub fn debian12() -> &'static Catalog {
        Catalog::named("debian12").expect("debian12 is one of BASES")
    }

    /// The Debian 13 catalog (PostgreSQL 17), the default base.
    pub fn debian13() -> &'static Catalog {
        Catalog::named("debian13").expect("debian13 is one of BASES")
    }

    /// The base of `name`, or an error naming the bases there are. Inventory
    /// validation refuses unknown names first, with their line.
    pub fn base(name: &str) -> anyhow::Result<&'static Catalog> {
        Catalog::named(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown base `{name}`: this pigsty builds {}",
                Catalog::names().join(", ")
            )
        })
    }

    /// Whether `repo` is this base's own archive (the layer's first source).
    pub fn is_archive(&self, repo: &Repository) -> bool {
        repo.uri == self.mirror && repo.suite == self.suite
    }

    /// The newest PostgreSQL major the base's own archive ships: a node's
    /// `pg_version` when the inventory does not set one.
    pub fn newest_pg(&self) -> u32 {
        self.pg_versions.iter().copied().max().unwrap_or(0)
    }

    pub fn parse(text: &str) -> Result<Catalog, String> {
        let root = crate::inventory::yaml::parse(text)
            .map_err(|e| format!("{}:{}: {}", e.loc.line, e.loc.col, e.message))?
            .ok_or("empty catalog")?;
        let json = root.to_json_with(&|s: &str| s.to_string());
        serde_path_to_error::deserialize(json).map_err(|e| e.to_string())
    }

    /// Packages for a set of modules (base excluded), with `{pg_version}` filled in.
    /// The packages of an optional feature; none when the base names no such feature.
    pub fn feature(&self, name: &str) -> &[String] {
        self.features.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn packages(
        &self,
        modules: impl IntoIterator<Item = Module>,
        pg_version: u32,
    ) -> Vec<String> {
        let mut out: Vec<String> = modules
            .into_iter()
            .filter_map(|m| self.modules.get(&m))
            .flatten()
            .map(|p| p.replace("{pg_version}", &pg_version.to_string()))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_base_parses_and_debian13_is_the_default() {
        assert_eq!(Catalog::all().len(), BASES.len());
        assert_eq!(DEFAULT_BASE, "debian13");
        let c = Catalog::debian13();
        assert_eq!((c.suite.as_str(), c.newest_pg()), ("trixie", 17));
        assert_eq!(Catalog::debian12().newest_pg(), 15);
        assert!(Catalog::named("debian11").is_none());
        let pg = c.packages([Module::Pgsql], 17);
        assert!(pg.contains(&"postgresql-17".to_string()), "{pg:?}");
        // Both bases list the same module packages: only the suite and majors differ.
        assert_eq!(c.modules, Catalog::debian12().modules);
        assert_eq!(c.base, Catalog::debian12().base);
    }

    #[test]
    fn debian12_catalog() {
        let c = Catalog::debian12();
        assert_eq!(c.suite, "bookworm");
        let pg = c.packages([Module::Pgsql], 15);
        for p in [
            "postgresql-15",
            "patroni",
            "pgbouncer",
            "haproxy",
            "pgbackrest",
        ] {
            assert!(pg.contains(&p.to_string()), "{p} missing from {pg:?}");
        }
        assert_eq!(
            c.packages([Module::Etcd], 15),
            ["etcd-client", "etcd-server"]
        );
        assert!(c.base.contains(&"linux-image-amd64".to_string()));
    }
}
