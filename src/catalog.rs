//! The base image definition and module → package catalog (`images/debian12.yml`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::model::Module;

const DEBIAN12: &str = include_str!("../images/debian12.yml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub name: String,
    pub suite: String,
    pub mirror: String,
    pub architecture: String,
    pub components: Vec<String>,
    pub base: Vec<String>,
    pub pg_versions: Vec<u32>,
    pub modules: BTreeMap<Module, Vec<String>>,
}

impl Catalog {
    /// The Debian 12 catalog compiled into the binary.
    pub fn debian12() -> &'static Catalog {
        static CAT: OnceLock<Catalog> = OnceLock::new();
        CAT.get_or_init(|| {
            Catalog::parse(DEBIAN12).expect("images/debian12.yml is valid (checked by a unit test)")
        })
    }

    pub fn parse(text: &str) -> Result<Catalog, String> {
        let root = crate::inventory::yaml::parse(text)
            .map_err(|e| format!("{}:{}: {}", e.loc.line, e.loc.col, e.message))?
            .ok_or("empty catalog")?;
        let json = root.to_json_with(&|s: &str| s.to_string());
        serde_path_to_error::deserialize(json).map_err(|e| e.to_string())
    }

    /// Packages for a set of modules (base excluded), with `{pg_version}` filled in.
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
