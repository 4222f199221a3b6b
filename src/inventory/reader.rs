//! Reading one node's resolved variables into typed values. Each read goes through
//! serde, so a wrong type is reported with the path inside the value (`pg_users[2].name`)
//! and the line and column where that part was written.
//!
//! It lives in `inventory` (not `model`) because it reads YAML nodes, scopes and
//! placeholders; the model's parameter structs read through the `model::VarSource`
//! trait that this reader implements.

use rustc_hash::FxHashMap as HashMap;
use std::any::{Any, TypeId};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::groups::Scope;
use super::yaml::{Node, Value};
use crate::diag::{Finding, Loc};
use crate::model::VarSource;

/// A variable as it applies to one host: the winning definition.
#[derive(Debug, Clone)]
pub struct Resolved<'a> {
    pub value: &'a Arc<Node>,
    pub scope: Scope,
}

/// All variables of one host, by name: its own (inventory) definitions over the
/// shared built-in defaults, which are not copied per host.
pub struct Vars<'a> {
    pub own: HashMap<&'a str, Resolved<'a>>,
    pub defaults: &'a HashMap<&'static str, Resolved<'static>>,
}

impl<'a> Vars<'a> {
    pub fn get(&self, key: &str) -> Option<&Resolved<'a>> {
        self.own.get(key).or_else(|| self.defaults.get(key))
    }
}

/// Typed values already read, shared by every host of one load. Most values come
/// from defaults, `all.vars` or a cluster's group vars and read the same for every
/// host, so each is converted and checked once per distinct placeholder expansion.
#[derive(Default)]
pub struct ReadCache {
    typed: HashMap<(usize, TypeId, String), Box<dyn Any>>,
    /// Reads that failed: reported once, not converted again for every host.
    failed: std::collections::HashSet<(usize, TypeId, String)>,
    /// Placeholder names (`${name}`) a definition holds, by the definition's address.
    names: HashMap<usize, Vec<String>>,
}

fn placeholder_names(node: &Node, out: &mut Vec<String>) {
    match &node.value {
        Value::Str(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                if !out.iter().any(|n| n == &after[..end]) {
                    out.push(after[..end].to_string());
                }
                rest = &after[end + 1..];
            }
        }
        Value::Seq(items) => items.iter().for_each(|n| placeholder_names(n, out)),
        Value::Map(m) => m.iter().for_each(|(_, v)| placeholder_names(v, out)),
        _ => {}
    }
}

/// One step into a variable's value, for [`VarReader::loc_in`].
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    Item(usize),
    Field(&'a str),
}

pub struct VarReader<'a> {
    pub cache: &'a mut ReadCache,
    pub file: &'a str,
    /// The inventory file's directory, where the files it names are read from;
    /// `None` for built-in inventories and text given without a file.
    pub dir: Option<&'a std::path::Path>,
    /// The host's key in the inventory, where errors without a better place point.
    pub host_loc: Loc,
    pub ip: &'a str,
    pub vars: &'a Vars<'a>,
    pub findings: &'a mut Vec<Finding>,
}

impl<'a> VarReader<'a> {
    pub fn var(&self, key: &str) -> Option<&Resolved<'a>> {
        self.vars.get(key)
    }

    /// Where a variable was written, or the host key if it was not.
    pub fn loc(&self, key: &str) -> Loc {
        match self.vars.get(key) {
            Some(v) if v.scope != Scope::Default => v.value.loc,
            _ => self.host_loc,
        }
    }

    /// Where a part of variable `key` was written: `path` steps into list items and
    /// mapping fields (`pg_databases[2].extensions[0]`); a step that is not there
    /// stops at the nearest enclosing place (the variable itself, or the host key).
    pub fn loc_in(&self, key: &str, path: &[Step<'_>]) -> Loc {
        let mut loc = self.loc(key);
        // A built-in default has no place in the user's file: the host key stands in.
        let Some(var) = self.vars.get(key).filter(|v| v.scope != Scope::Default) else {
            return loc;
        };
        let mut node: &Node = var.value;
        for step in path {
            let next = match (step, &node.value) {
                (Step::Item(i), Value::Seq(items)) => items.get(*i),
                (Step::Field(f), _) => node.get(f),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
            loc = node.loc;
        }
        loc
    }

    /// Whether the variable is set to something other than null.
    pub fn is_set(&self, key: &str) -> bool {
        self.vars
            .get(key)
            .is_some_and(|v| v.value.value != Value::Null)
    }

    /// A string variable with every placeholder but `keep` substituted.
    pub fn pattern(&self, key: &str, keep: &str) -> Option<String> {
        let text = self.vars.get(key)?.value.scalar_text()?;
        Some(self.substitute(&text, 0, Some(keep)))
    }

    /// Read `key` as `T`. A missing or invalid value is reported and gives `None`.
    pub fn get<T: DeserializeOwned + Clone + 'static>(&mut self, key: &str) -> Option<T> {
        let Some(var) = self.vars.get(key) else {
            return self.read::<T>(key, None);
        };
        let node = var.value;
        let addr = Arc::as_ptr(node) as usize;
        let names = self.cache.names.entry(addr).or_insert_with(|| {
            let mut names = Vec::new();
            placeholder_names(node, &mut names);
            names
        });
        // What the placeholders expand to on this host: hosts that agree share a read.
        let expansion: Vec<Option<String>> = names
            .clone()
            .iter()
            .map(|n| self.placeholder(n, 0, None))
            .collect();
        let id = (addr, TypeId::of::<T>(), format!("{expansion:?}"));
        if let Some(hit) = self
            .cache
            .typed
            .get(&id)
            .and_then(|b| b.downcast_ref::<T>())
        {
            return Some(hit.clone());
        }
        if self.cache.failed.contains(&id) {
            return None;
        }
        let Some(value) = self.read::<T>(key, Some(node.clone())) else {
            self.cache.failed.insert(id);
            return None;
        };
        self.cache.typed.insert(id, Box::new(value.clone()));
        Some(value)
    }

    fn read<T: DeserializeOwned>(&mut self, key: &str, node: Option<Arc<Node>>) -> Option<T> {
        let json = node
            .as_deref()
            .map_or(serde_json::Value::Null, |n| self.to_json(n, 0));
        let is_null = json.is_null();
        match serde_path_to_error::deserialize::<_, T>(json) {
            Ok(v) => Some(v),
            Err(e) if is_null => {
                let _ = e;
                self.error(
                    self.host_loc,
                    key,
                    format!("required parameter `{key}` is missing"),
                );
                None
            }
            Err(e) => {
                let path = e.path().to_string();
                let (loc, shown) = match &node {
                    Some(n) => locate(n, e.path()),
                    None => (self.host_loc, String::new()),
                };
                let full = if path == "." {
                    key.to_string()
                } else {
                    format!("{key}{}", shown)
                };
                self.error(loc, &full, e.into_inner().to_string());
                None
            }
        }
    }

    /// How many errors have been reported so far (by every host read with these
    /// findings).
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == crate::diag::Severity::Error)
            .count()
    }

    pub fn error(&mut self, loc: Loc, key: &str, message: impl Into<String>) {
        self.findings
            .push(Finding::error(self.file, loc, key, message));
    }

    pub fn warn(&mut self, loc: Loc, key: &str, message: impl Into<String>) {
        self.findings
            .push(Finding::warning(self.file, loc, key, message));
    }

    fn to_json(&self, node: &Node, depth: u8) -> serde_json::Value {
        node.to_json_with(&|s: &str| self.substitute(s, depth, None))
    }

    /// Replace `${ip}` and `${var}` (a scalar variable of this host); unknown names stay
    /// as written, since Pigsty renders some (`${dbsu}`, `${admin}`) later itself.
    /// `keep` names one placeholder to leave as written (a per-member pattern).
    pub fn substitute(&self, s: &str, depth: u8, keep: Option<&str>) -> String {
        if !s.contains("${") {
            return s.to_string();
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            let name = &after[..end];
            let value = if keep == Some(name) {
                None
            } else {
                self.placeholder(name, depth, keep)
            };
            match value {
                Some(v) => out.push_str(&v),
                None => out.push_str(&rest[start..start + 2 + end + 1]),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn placeholder(&self, name: &str, depth: u8, keep: Option<&str>) -> Option<String> {
        if name == "ip" {
            return Some(self.ip.to_string());
        }
        // One level of nesting (`minio_node` holds `${minio_cluster}`) and no loops.
        if depth >= 2 {
            return None;
        }
        let var = self.vars.get(name)?;
        let text = var.value.scalar_text()?;
        Some(self.substitute(&text, depth + 1, keep))
    }
}

impl VarSource for VarReader<'_> {
    fn get<T: DeserializeOwned + Clone + 'static>(&mut self, key: &str) -> Option<T> {
        VarReader::get(self, key)
    }
}

/// Follow a serde path into the YAML node: the position of the offending part, and the
/// path as shown to the user (`[2].name`).
fn locate(node: &Node, path: &serde_path_to_error::Path) -> (Loc, String) {
    use serde_path_to_error::Segment;
    let mut cur = node;
    let mut shown = String::new();
    for seg in path.iter() {
        let next = match seg {
            Segment::Seq { index } => {
                shown.push_str(&format!("[{index}]"));
                match &cur.value {
                    Value::Seq(items) => items.get(*index),
                    _ => None,
                }
            }
            Segment::Map { key } => {
                shown.push_str(&format!(".{key}"));
                cur.get(key)
            }
            Segment::Enum { .. } | Segment::Unknown => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    (cur.loc, shown)
}
