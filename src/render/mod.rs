//! Render a node's overlay: every configuration file and unit its modules need, from
//! the tera templates under `overlays/<module>/` (embedded in the binary), plus
//! `/etc/pigsty/node.json` for the first-boot agent.
//!
//! A template's path mirrors its target (`overlays/pgsql/etc/patroni/patroni.yml.tera`
//! → `/etc/patroni/patroni.yml`). Each module's `meta.yml` gives a file's mode, owner,
//! the flag that gates it (`when`) and per-instance expansion (`each`). Values reach
//! structured outputs only through escaping filters (see [`filters`]).

pub mod context;
pub mod filters;
mod haproxy;
pub mod infra;
mod minio;
mod pgsql;
mod redis;
pub mod write;

pub use pgsql::applies_sql;
pub use pgsql::conf::CLUSTER_WIDE;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use include_dir::{Dir, include_dir};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::model::{Fleet, Module, Node};
use crate::plan::{JoinStep, PlanFile};

static OVERLAYS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/overlays");

/// One rendered file of the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute target path in the image (`/etc/patroni/patroni.yml`).
    pub path: String,
    pub mode: u32,
    /// `user:group` (names, resolved against the image's passwd at build time).
    pub owner: String,
    pub content: Vec<u8>,
}

impl RenderedFile {
    pub fn plan_entry(&self) -> PlanFile {
        PlanFile {
            path: self.path.clone(),
            mode: format!("{:04o}", self.mode),
            owner: self.owner.clone(),
            sha256: hex::encode(Sha256::digest(&self.content)),
        }
    }

    /// Whether any user on the node could read it.
    pub fn world_readable(&self) -> bool {
        self.mode & 0o004 != 0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rendering {file} for {node}: {reason}")]
pub struct RenderError {
    pub node: String,
    pub file: String,
    pub reason: String,
}

/// File attributes from a module's `meta.yml`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMeta {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    /// A flag of the render context (`flags.<name>`) that must be true.
    #[serde(default)]
    when: Option<String>,
    /// Render once per item of a context list (`redis_instances`), the item bound as
    /// `item`; `{name}` in the path is replaced by the item's `name`.
    #[serde(default)]
    each: Option<String>,
    /// The context values (JSON pointers) the template reads, when they are all it
    /// reads: nodes whose values are equal (a cluster's members, for its SQL) share
    /// one render ([`shared_render`]). A unit test renders each such template from
    /// these values alone and compares.
    #[serde(default)]
    shared: Option<Vec<String>>,
}

struct Engine {
    tera: tera::Tera,
    /// Module → (template name, target path pattern, attributes), in path order.
    files: BTreeMap<Module, Vec<(String, String, FileMeta)>>,
}

const MODULE_DIRS: [(Module, &str); 6] = [
    (Module::Node, "node"),
    (Module::Infra, "infra"),
    (Module::Etcd, "etcd"),
    (Module::Pgsql, "pgsql"),
    (Module::Redis, "redis"),
    (Module::Minio, "minio"),
];

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::load().expect("embedded overlays are valid (checked by unit tests)")
    })
}

impl Engine {
    fn load() -> Result<Engine, String> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        filters::register(&mut tera);
        let mut files = BTreeMap::new();
        for (module, dir_name) in MODULE_DIRS {
            let mut list = Vec::new();
            let Some(dir) = OVERLAYS.get_dir(dir_name) else {
                files.insert(module, list);
                continue;
            };
            let meta = read_meta(dir_name)?;
            let mut templates = Vec::new();
            collect_templates(dir, &mut templates);
            templates.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, text) in templates {
                tera.add_raw_template(&name, &text)
                    .map_err(|e| format!("template {name}: {}", error_chain(&e)))?;
                let rel = name
                    .strip_prefix(&format!("{dir_name}/"))
                    .and_then(|r| r.strip_suffix(".tera"))
                    .unwrap_or(&name)
                    .to_string();
                let attrs = meta.get(&rel).cloned().unwrap_or_default();
                list.push((name, format!("/{rel}"), attrs));
            }
            for key in meta.keys() {
                if !list.iter().any(|(_, p, _)| p[1..] == *key) {
                    return Err(format!(
                        "overlays/{dir_name}/meta.yml names {key}, which has no template"
                    ));
                }
            }
            files.insert(module, list);
        }
        Ok(Engine { tera, files })
    }
}

fn collect_templates(dir: &Dir<'static>, out: &mut Vec<(String, String)>) {
    for file in dir.files() {
        let path = file.path().to_string_lossy().into_owned();
        if let (true, Some(text)) = (path.ends_with(".tera"), file.contents_utf8()) {
            out.push((path, text.to_string()));
        }
    }
    for sub in dir.dirs() {
        collect_templates(sub, out);
    }
}

fn read_meta(dir_name: &str) -> Result<BTreeMap<String, FileMeta>, String> {
    let Some(file) = OVERLAYS.get_file(format!("{dir_name}/meta.yml")) else {
        return Ok(BTreeMap::new());
    };
    let text = file.contents_utf8().ok_or("meta.yml is not UTF-8")?;
    let root = crate::inventory::yaml::parse(text)
        .map_err(|e| format!("overlays/{dir_name}/meta.yml:{}: {}", e.loc.line, e.message))?;
    let Some(root) = root else {
        return Ok(BTreeMap::new());
    };
    serde_path_to_error::deserialize(root.to_json_with(&|s: &str| s.to_string()))
        .map_err(|e| format!("overlays/{dir_name}/meta.yml: {e}"))
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        cur = s.source();
    }
    msg
}

/// Render every file of a node: module overlays, then `/etc/pigsty/node.json`.
pub fn render_node(
    fleet: &Fleet,
    node: &Node,
    join: &[JoinStep],
) -> Result<Vec<RenderedFile>, RenderError> {
    let engine = engine();
    let ctx_value = context::build(fleet, node, join)?;
    let ctx = tera::Context::from_value(ctx_value).map_err(|e| RenderError {
        node: node.nodename.clone(),
        file: "(context)".into(),
        reason: error_chain(&e),
    })?;
    let mut out = Vec::new();
    let mut shared = SharedKeys::default();
    for module in &node.modules {
        for (name, path, meta) in engine.files.get(module).into_iter().flatten() {
            if !flag_on(&ctx, meta.when.as_deref()) {
                continue;
            }
            render_one(engine, node, &ctx, name, path, meta, &mut shared, &mut out)?;
        }
    }
    out.push(context::node_json_file(&context::node_json(
        fleet, node, join,
    )));
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn flag_on(ctx: &tera::Context, when: Option<&str>) -> bool {
    match when {
        None => true,
        Some(flag) => ctx
            .get("flags")
            .and_then(|f| f.get(flag))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
    }
}

/// A context value by JSON pointer (`/redis/instances`).
fn lookup<'c>(ctx: &'c tera::Context, pointer: &str) -> Option<&'c serde_json::Value> {
    let mut parts = pointer.trim_start_matches('/').splitn(2, '/');
    let top = ctx.get(parts.next()?)?;
    match parts.next() {
        None => Some(top),
        Some(rest) => top.pointer(&format!("/{rest}")),
    }
}

/// The digest of a node's values of each `shared` list, computed once per node: a
/// cluster's three SQL files read the same values.
#[derive(Default)]
struct SharedKeys(Vec<(Vec<String>, [u8; 32])>);

impl SharedKeys {
    fn of(&mut self, ctx: &tera::Context, pointers: &[String]) -> [u8; 32] {
        if let Some((_, k)) = self.0.iter().find(|(p, _)| p == pointers) {
            return *k;
        }
        let mut h = Sha256::new();
        for p in pointers {
            let value = lookup(ctx, p).unwrap_or(&serde_json::Value::Null);
            // Length-prefixed, so no two lists of values give the same bytes.
            let bytes = serde_json::to_vec(value).unwrap_or_default();
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        let k: [u8; 32] = h.finalize().into();
        self.0.push((pointers.to_vec(), k));
        k
    }
}

/// Render `name`, or take the text rendered before from equal values of `pointers`
/// (its `shared` list): `plan --all` renders each cluster's SQL once, not once per
/// member. The memo is the process's, bounded (emptied past [`SHARED_MEMO_MAX`]).
fn shared_render(
    engine: &Engine,
    name: &str,
    ctx: &tera::Context,
    pointers: &[String],
    keys: &mut SharedKeys,
) -> tera::Result<String> {
    static MEMO: crate::memo::Memo = crate::memo::Memo::new(SHARED_MEMO_MAX);
    let values = keys.of(ctx, pointers);
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(values);
    MEMO.get_or_make(h.finalize().into(), || engine.tera.render(name, ctx))
}

/// Entries of [`shared_render`]'s memo before it is emptied (a fleet of 1,000
/// PostgreSQL clusters holds 3,000 texts of a few KiB).
const SHARED_MEMO_MAX: usize = 16_384;

#[allow(clippy::too_many_arguments)]
fn render_one(
    engine: &Engine,
    node: &Node,
    ctx: &tera::Context,
    name: &str,
    path: &str,
    meta: &FileMeta,
    shared: &mut SharedKeys,
    out: &mut Vec<RenderedFile>,
) -> Result<(), RenderError> {
    let fail = |file: &str, reason: String| RenderError {
        node: node.nodename.clone(),
        file: file.to_string(),
        reason,
    };
    let mode = match &meta.mode {
        Some(m) => u32::from_str_radix(m, 8).map_err(|_| fail(path, format!("bad mode {m}")))?,
        None => 0o644,
    };
    let owner = meta.owner.clone().unwrap_or_else(|| "root:root".into());
    let owner = if owner.contains(':') {
        owner
    } else {
        format!("{owner}:{owner}")
    };
    let items: Vec<Option<&serde_json::Value>> = match &meta.each {
        None => vec![None],
        Some(list) => lookup(ctx, list)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(Some).collect())
            .unwrap_or_default(),
    };
    for item in items {
        let (target, text) = match item {
            None => match &meta.shared {
                Some(pointers) => (
                    path.to_string(),
                    shared_render(engine, name, ctx, pointers, shared),
                ),
                None => (path.to_string(), engine.tera.render(name, ctx)),
            },
            Some(item) => {
                let item_name = item["name"].as_str().unwrap_or_default();
                let mut c = ctx.clone();
                c.insert("item", item);
                (
                    path.replace("{name}", item_name),
                    engine.tera.render(name, &c),
                )
            }
        };
        let text = text.map_err(|e| fail(&target, error_chain(&e)))?;
        out.push(RenderedFile {
            path: target,
            mode,
            owner: owner.clone(),
            content: text.into_bytes(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_load() {
        let engine = Engine::load().unwrap();
        assert!(!engine.files[&Module::Node].is_empty());
    }

    /// A context holding only the values at `pointers`, at their places.
    fn only(ctx: &tera::Context, pointers: &[String]) -> tera::Context {
        let mut root = serde_json::Value::Object(Default::default());
        for p in pointers {
            let Some(value) = lookup(ctx, p) else {
                continue;
            };
            let parts: Vec<&str> = p.trim_start_matches('/').split('/').collect();
            let mut cur = &mut root;
            for (i, part) in parts.iter().enumerate() {
                let obj = cur.as_object_mut().expect("a pointer through objects");
                cur = if i + 1 == parts.len() {
                    obj.insert(part.to_string(), value.clone());
                    break;
                } else {
                    obj.entry(part.to_string())
                        .or_insert_with(|| serde_json::Value::Object(Default::default()))
                };
            }
        }
        tera::Context::from_value(root).unwrap()
    }

    /// Each template marked `shared` reads nothing but its listed values: rendered
    /// from them alone (tera refuses a variable it does not have) it gives the text
    /// the whole context gives, for every node of the built-in and fixture
    /// inventories (Pigsty's own among them).
    #[test]
    fn shared_templates_read_only_what_they_list() {
        let engine = Engine::load().unwrap();
        let marked: Vec<&(String, String, FileMeta)> = engine
            .files
            .values()
            .flatten()
            .filter(|(_, _, m)| m.shared.is_some())
            .collect();
        assert!(!marked.is_empty(), "no template is marked shared");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut sources = vec![
            crate::inventory::Source::BuiltIn,
            crate::inventory::Source::BuiltInLab,
        ];
        for dir in [
            "inventories",
            "pigsty-v4.5.0",
            "pigsty-v4.5.0/ha",
            "pigsty-v4.5.0/demo",
        ] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            let mut files: Vec<_> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml"))
                .collect();
            files.sort();
            sources.extend(files.into_iter().map(crate::inventory::Source::File));
        }
        let mut checked = 0;
        for source in &sources {
            // Fixtures the tool refuses are other tests' business.
            let Ok(loaded) = crate::inventory::load(source) else {
                continue;
            };
            let fleet = &loaded.fleet;
            for node in &fleet.nodes {
                let ctx =
                    tera::Context::from_value(context::build(fleet, node, &[]).unwrap()).unwrap();
                for (name, _, meta) in &marked {
                    if !flag_on(&ctx, meta.when.as_deref()) {
                        continue;
                    }
                    let pointers = meta.shared.as_deref().unwrap();
                    let full = engine.tera.render(name, &ctx).unwrap();
                    let alone = engine
                        .tera
                        .render(name, &only(&ctx, pointers))
                        .unwrap_or_else(|e| {
                            panic!(
                                "{name} reads more than {pointers:?} ({source:?}, {}): {}",
                                node.nodename,
                                error_chain(&e)
                            )
                        });
                    assert_eq!(full, alone, "{name} for {} ({source:?})", node.nodename);
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "only {checked} renders compared");
    }
}
