//! Load a Pigsty inventory: find it, parse it, resolve every host's variables and
//! validate the result into a typed [`Fleet`].

pub mod groups;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use crate::diag::{Finding, Invalid, Loc};
use crate::model::Fleet;

/// The built-in default inventory: a singleton meta node.
pub const BUILTIN: &str = include_str!("../../inventory/pigsty.yml");
/// How the built-in inventory is named in messages.
pub const BUILTIN_NAME: &str = "<built-in>/pigsty.yml";

/// Where an inventory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    BuiltIn,
}

impl Source {
    /// Inventory lookup order: `-i PATH`, `$PIGSTY_INVENTORY`, `./pigsty.yml`, built-in.
    pub fn locate(flag: Option<&Path>, env: Option<&str>, cwd: &Path) -> Source {
        if let Some(p) = flag {
            return Source::File(p.to_path_buf());
        }
        if let Some(p) = env.filter(|p| !p.is_empty()) {
            return Source::File(PathBuf::from(p));
        }
        let local = cwd.join("pigsty.yml");
        if local.is_file() {
            return Source::File(PathBuf::from("pigsty.yml"));
        }
        Source::BuiltIn
    }

    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::BuiltIn => BUILTIN_NAME.to_string(),
        }
    }
}

/// A validated inventory and its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub fleet: Fleet,
    pub warnings: Vec<Finding>,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading inventory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// Read and validate an inventory from its source.
pub fn load(source: &Source) -> Result<Loaded, LoadError> {
    let name = source.name();
    let text = match source {
        Source::BuiltIn => BUILTIN.to_string(),
        Source::File(path) => std::fs::read_to_string(path).map_err(|e| LoadError::Io {
            path: name.clone(),
            source: e,
        })?,
    };
    Ok(load_str(&name, &text)?)
}

/// Validate inventory text; `name` is how the file is named in findings.
pub fn load_str(name: &str, text: &str) -> Result<Loaded, Invalid> {
    let mut findings = Vec::new();
    let invalid = |findings: Vec<Finding>| Invalid {
        file: name.to_string(),
        findings,
        text: Some(text.to_string()),
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            let f = Finding::error(
                name,
                Loc::new(1, 1),
                "all",
                "the inventory is empty: expected a mapping with the group `all`",
            );
            return Err(invalid(vec![f]));
        }
        Err(e) => {
            let f = Finding::error(
                name,
                e.loc,
                "yaml",
                format!("malformed YAML: {}", e.message),
            );
            return Err(invalid(vec![f]));
        }
    };
    let tree = groups::Tree::build(&root, name, &mut findings);
    let nodes = validate::validate(&tree, name, &mut findings);
    if nodes.is_empty() && !findings.iter().any(Finding::is_error) {
        findings.push(Finding::error(
            name,
            root.loc,
            "all",
            "the inventory has no hosts",
        ));
    }
    if findings.iter().any(Finding::is_error) {
        return Err(invalid(findings));
    }
    Ok(Loaded {
        fleet: Fleet {
            source: name.to_string(),
            nodes,
        },
        warnings: findings,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let flag = Path::new("x.yml");
        assert_eq!(
            Source::locate(Some(flag), Some("e.yml"), dir.path()),
            Source::File(flag.into())
        );
        assert_eq!(
            Source::locate(None, Some("e.yml"), dir.path()),
            Source::File("e.yml".into())
        );
        assert_eq!(Source::locate(None, None, dir.path()), Source::BuiltIn);
        std::fs::write(dir.path().join("pigsty.yml"), "all: {}").unwrap();
        assert_eq!(
            Source::locate(None, Some(""), dir.path()),
            Source::File("pigsty.yml".into())
        );
    }

    #[test]
    fn builtin_loads() {
        let loaded = load(&Source::BuiltIn).unwrap();
        assert_eq!(loaded.fleet.nodes.len(), 1);
    }

    #[test]
    fn defaults_parse() {
        // The built-in defaults are part of every load; a broken file must fail here.
        assert!(
            yaml::parse(include_str!("../model/defaults.yml"))
                .unwrap()
                .is_some()
        );
    }
}
