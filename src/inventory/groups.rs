//! Ansible inventory structure: groups (nested through `children`), hosts and the
//! variables defined at each level. Only structure is checked here; what variables
//! mean is the model's business.

use std::collections::HashMap;
use std::sync::Arc;

use super::yaml::{Key, Node, Value};
use crate::diag::{Finding, Loc, did_you_mean};

/// Where a variable was defined, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Built-in Pigsty default.
    Default,
    /// `all.vars`.
    All,
    /// A group's `vars` (index into [`Tree::groups`]).
    Group(usize),
    /// Host variables.
    Host,
}

/// One variable definition: its key (with position) and value.
#[derive(Debug, Clone)]
pub struct VarDef {
    pub key: Key,
    pub value: Arc<Node>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub loc: Loc,
    pub vars: Vec<VarDef>,
    pub parents: Vec<usize>,
    /// Distance from `all` along the longest parent chain, as Ansible sorts groups.
    pub depth: usize,
}

#[derive(Debug, Clone)]
pub struct Host {
    /// The host key as written (Pigsty requires an IPv4 address).
    pub key: Key,
    /// Groups that list this host directly.
    pub groups: Vec<usize>,
    pub vars: Vec<VarDef>,
}

/// The parsed structure of an inventory file.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub groups: Vec<Group>,
    pub hosts: Vec<Host>,
    group_index: HashMap<String, usize>,
    host_index: HashMap<String, usize>,
}

const GROUP_KEYS: [&str; 3] = ["hosts", "vars", "children"];

impl Tree {
    /// Every variable definition written in the file (all.vars, group vars, host
    /// vars), each once: a host listed in several groups carries its variables once
    /// per listing, all at the same place.
    pub fn definitions(&self) -> impl Iterator<Item = &VarDef> {
        let mut seen = std::collections::HashSet::new();
        self.groups
            .iter()
            .flat_map(|g| &g.vars)
            .chain(self.hosts.iter().flat_map(|h| &h.vars))
            .filter(move |d| seen.insert((d.key.name.as_str(), d.key.loc)))
    }

    pub fn group(&self, name: &str) -> Option<usize> {
        self.group_index.get(name).copied()
    }

    /// Read the group tree; structural problems go to `findings`, and loading goes on
    /// past them so that every problem of the file is reported at once.
    pub fn build(root: &Node, file: &str, findings: &mut Vec<Finding>) -> Tree {
        let mut tree = Tree::default();
        let Some(top) = root.as_map() else {
            findings.push(Finding::error(
                file,
                root.loc,
                "all",
                format!(
                    "expected a mapping with the group `all`, found {}",
                    root.type_name()
                ),
            ));
            return tree;
        };
        let all = tree.intern_group("all", root.loc);
        for (key, node) in top {
            if key.name == "all" {
                tree.read_group(all, node, file, findings);
            } else {
                // Ansible treats other top-level keys as groups under `all`.
                let g = tree.intern_group(&key.name, key.loc);
                tree.link(all, g);
                tree.read_group(g, node, file, findings);
            }
        }
        tree.compute_depths();
        tree
    }

    fn intern_group(&mut self, name: &str, loc: Loc) -> usize {
        if let Some(&i) = self.group_index.get(name) {
            return i;
        }
        let i = self.groups.len();
        self.groups.push(Group {
            name: name.to_string(),
            loc,
            vars: Vec::new(),
            parents: Vec::new(),
            depth: 0,
        });
        self.group_index.insert(name.to_string(), i);
        i
    }

    fn link(&mut self, parent: usize, child: usize) {
        if parent != child && !self.groups[child].parents.contains(&parent) {
            self.groups[child].parents.push(parent);
        }
    }

    fn read_group(&mut self, g: usize, node: &Node, file: &str, findings: &mut Vec<Finding>) {
        let name = self.groups[g].name.clone();
        let entries = map_entries(
            node,
            file,
            name.clone(),
            "a group must be a mapping of hosts/vars/children",
            findings,
        );
        for (key, value) in entries {
            match key.name.as_str() {
                "vars" => {
                    let vars = read_vars(value, &format!("{name}.vars"), file, findings);
                    self.groups[g].vars.extend(vars);
                }
                "hosts" => self.read_hosts(g, value, file, findings),
                "children" => self.read_children(g, value, file, findings),
                // Ansible skips such a key with a warning (an anchor holder such as
                // `x-common: &common {...}` is one), so a file it accepts loads here too.
                other => {
                    let mut f = Finding::warning(
                        file,
                        key.loc,
                        format!("{name}.{other}"),
                        "unexpected key in a group, ignored (as Ansible ignores it): \
                         a group holds `hosts`, `vars` and `children`",
                    );
                    if let Some(s) = did_you_mean(other, GROUP_KEYS) {
                        f = f.with_help(format!("did you mean `{s}`?"));
                    }
                    findings.push(f);
                }
            }
        }
    }

    fn read_children(&mut self, g: usize, node: &Node, file: &str, findings: &mut Vec<Finding>) {
        let parent_name = self.groups[g].name.clone();
        let entries = map_entries(
            node,
            file,
            format!("{parent_name}.children"),
            "expected a mapping of group names",
            findings,
        );
        for (key, child) in entries {
            if key.name == "all" || self.is_ancestor(&key.name, g) {
                findings.push(Finding::error(
                    file,
                    key.loc,
                    format!("{parent_name}.children.{}", key.name),
                    "group nesting forms a cycle",
                ));
                continue;
            }
            let c = self.intern_group(&key.name, key.loc);
            self.link(g, c);
            self.read_group(c, child, file, findings);
        }
    }

    fn is_ancestor(&self, name: &str, g: usize) -> bool {
        let mut stack = vec![g];
        let mut seen = vec![false; self.groups.len()];
        while let Some(i) = stack.pop() {
            if self.groups[i].name == name {
                return true;
            }
            if !std::mem::replace(&mut seen[i], true) {
                stack.extend(self.groups[i].parents.iter().copied());
            }
        }
        false
    }

    fn read_hosts(&mut self, g: usize, node: &Node, file: &str, findings: &mut Vec<Finding>) {
        let group_name = self.groups[g].name.clone();
        let entries = map_entries(
            node,
            file,
            format!("{group_name}.hosts"),
            "expected a mapping of host addresses",
            findings,
        );
        for (key, vars) in entries {
            let scope = format!("{group_name}.hosts.{}", key.name);
            let vars = read_vars(vars, &scope, file, findings);
            let h = match self.host_index.get(&key.name) {
                Some(&h) => h,
                None => {
                    self.hosts.push(Host {
                        key: key.clone(),
                        groups: Vec::new(),
                        vars: Vec::new(),
                    });
                    self.host_index
                        .insert(key.name.clone(), self.hosts.len() - 1);
                    self.hosts.len() - 1
                }
            };
            let host = &mut self.hosts[h];
            if !host.groups.contains(&g) {
                host.groups.push(g);
            }
            // A host listed in several groups: later definitions of a variable win.
            host.vars.extend(vars);
        }
    }

    fn compute_depths(&mut self) {
        // Longest path from `all`; the cycle check above keeps this finite, and the
        // bound keeps it so even if that check had a gap.
        for _ in 0..self.groups.len() {
            let mut changed = false;
            for i in 0..self.groups.len() {
                let depth = self.groups[i]
                    .parents
                    .iter()
                    .map(|&p| self.groups[p].depth + 1)
                    .max()
                    .unwrap_or(0);
                if depth != self.groups[i].depth {
                    self.groups[i].depth = depth;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Every group a host belongs to (directly or through `children`), in Ansible's
    /// precedence order: shallow before deep, then by name.
    pub fn host_groups(&self, host: &Host) -> Vec<usize> {
        let mut seen = vec![false; self.groups.len()];
        let mut stack: Vec<usize> = host.groups.clone();
        if let Some(all) = self.group("all") {
            stack.push(all);
        }
        let mut out = Vec::new();
        while let Some(g) = stack.pop() {
            if std::mem::replace(&mut seen[g], true) {
                continue;
            }
            out.push(g);
            stack.extend(self.groups[g].parents.iter().copied());
        }
        out.sort_by(|&a, &b| {
            let (ga, gb) = (&self.groups[a], &self.groups[b]);
            (ga.depth, &ga.name).cmp(&(gb.depth, &gb.name))
        });
        out
    }
}

/// A mapping's entries: none for null (an empty section), and for anything else a
/// finding naming `key` and what was expected, then none.
fn map_entries<'n>(
    node: &'n Node,
    file: &str,
    key: impl Into<String>,
    expected: &str,
    findings: &mut Vec<Finding>,
) -> &'n [(Key, Node)] {
    match &node.value {
        Value::Map(m) => m,
        Value::Null => &[],
        _ => {
            let msg = format!("{expected}, found {}", node.type_name());
            findings.push(Finding::error(file, node.loc, key, msg));
            &[]
        }
    }
}

fn read_vars(node: &Node, scope: &str, file: &str, findings: &mut Vec<Finding>) -> Vec<VarDef> {
    map_entries(
        node,
        file,
        scope,
        "expected a mapping of variables",
        findings,
    )
    .iter()
    .map(|(k, v)| VarDef {
        key: k.clone(),
        value: Arc::new(v.clone()),
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::yaml::parse;

    fn tree(text: &str) -> (Tree, Vec<Finding>) {
        let mut f = Vec::new();
        let t = Tree::build(&parse(text).unwrap().unwrap(), "t.yml", &mut f);
        (t, f)
    }

    #[test]
    fn nested_children_and_order() {
        let (t, f) = tree(
            "all:\n  children:\n    prod:\n      vars: {a: 1}\n      children:\n        pg-x:\n          hosts: {10.0.0.1: {}}\n    zzz:\n      hosts: {10.0.0.1: {}}\n",
        );
        assert!(f.is_empty(), "{f:?}");
        let h = &t.hosts[0];
        let names: Vec<_> = t
            .host_groups(h)
            .iter()
            .map(|&g| t.groups[g].name.clone())
            .collect();
        assert_eq!(names, ["all", "prod", "zzz", "pg-x"]);
    }

    #[test]
    fn bad_group_key_is_reported_with_suggestion() {
        let (_, f) = tree("all:\n  children:\n    g:\n      host: {}\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].line, 4);
        assert_eq!(f[0].help.as_deref(), Some("did you mean `hosts`?"));
    }

    /// Ansible loads a group with an extra key and warns; so do we, and the group's
    /// hosts and vars still count (the anchor it holds is usable).
    #[test]
    fn extra_group_key_is_a_warning() {
        let text = "all:\n  children:\n    pg-x:\n      x-common: &common { pg_cluster: pg-x }\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars: *common\n";
        let loaded = crate::inventory::load_str("x.yml", text).unwrap();
        let w: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|f| f.key == "pg-x.x-common")
            .collect();
        assert_eq!(w.len(), 1, "{:?}", loaded.warnings);
        assert_eq!((w[0].file.as_str(), w[0].line), ("x.yml", 4));
        assert!(
            w[0].message.contains("Ansible ignores it"),
            "{}",
            w[0].message
        );
        let pg = loaded.fleet.nodes[0].pg.as_ref().unwrap();
        assert_eq!(pg.cluster, "pg-x");
    }

    #[test]
    fn cycles_are_refused() {
        let (_, f) = tree(
            "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a: {}\n",
        );
        assert!(f.iter().any(|f| f.message.contains("cycle")), "{f:?}");
    }
}
