//! Pigsty parameters that images do not build. `model/pigsty_params.yml` lists every
//! Pigsty parameter with its status; an inventory that sets a `warned` or `n/a` one to
//! anything but Pigsty's default gets a warning at that line, so no setting is dropped
//! without a word. The same names feed did-you-mean on typos.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::groups::{Tree, VarDef};
use super::yaml;
use crate::diag::Finding;

const TABLE: &str = include_str!("../model/pigsty_params.yml");

/// What pigsty does with a Pigsty parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum Status {
    /// Read by the typed model.
    #[serde(rename = "implemented")]
    Implemented,
    /// A feature images do not build yet.
    #[serde(rename = "warned")]
    Warned,
    /// Meaningless for an immutable image (cleanup playbooks, Ansible's connection).
    #[serde(rename = "n/a")]
    NotApplicable,
}

/// One entry of `pigsty_params.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Param {
    pub name: String,
    /// Pigsty's module; shown in docs/parameters.md, like `note`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub module: String,
    /// Pigsty's default, as the loader reads YAML (null: Pigsty sets none).
    #[serde(default)]
    pub default: serde_json::Value,
    pub status: Status,
    /// Why a `warned` or `n/a` parameter has no effect.
    #[serde(default)]
    pub reason: Option<String>,
    /// What is partial about an `implemented` one.
    #[cfg_attr(not(test), allow(dead_code))]
    #[serde(default)]
    pub note: Option<String>,
}

/// Every Pigsty parameter, in the table's order.
pub(crate) fn params() -> &'static [Param] {
    static PARAMS: OnceLock<Vec<Param>> = OnceLock::new();
    PARAMS
        .get_or_init(|| parse(TABLE).expect("pigsty_params.yml is valid (checked by a unit test)"))
}

/// Read the table with the inventory's own YAML reader, so `default` compares equal to
/// what an inventory writes the same way.
fn parse(text: &str) -> Result<Vec<Param>, String> {
    let root = yaml::parse(text)
        .map_err(|e| format!("line {}: {}", e.loc.line, e.message))?
        .ok_or("the table is empty")?;
    serde_json::from_value(root.to_json_with(&str::to_string)).map_err(|e| e.to_string())
}

/// The parameters an inventory may set without effect, by name.
fn unbuilt() -> &'static HashMap<&'static str, &'static Param> {
    static UNBUILT: OnceLock<HashMap<&'static str, &'static Param>> = OnceLock::new();
    UNBUILT.get_or_init(|| {
        params()
            .iter()
            .filter(|p| p.status != Status::Implemented)
            .map(|p| (p.name.as_str(), p))
            .collect()
    })
}

/// Warn once at every definition (all.vars, group vars, host vars) of an unbuilt
/// parameter whose value differs from Pigsty's default: restating the default asks for
/// nothing that images miss.
pub(super) fn check(tree: &Tree, file: &str, findings: &mut Vec<Finding>) {
    for def in tree.definitions() {
        let Some(param) = unbuilt().get(def.key.name.as_str()) else {
            continue;
        };
        if def.value.to_json_with(&str::to_string) != param.default {
            findings.push(warning(file, def, param));
        }
    }
}

fn warning(file: &str, def: &VarDef, param: &Param) -> Finding {
    let name = &param.name;
    let message = match param.status {
        Status::NotApplicable => format!("`{name}` has no effect in an image"),
        _ => format!("`{name}` has no effect in an image: pigsty does not build this yet"),
    };
    let finding = Finding::warning(file, def.key.loc, name.as_str(), message);
    match &param.reason {
        Some(reason) => finding.with_help(reason.as_str()),
        None => finding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::load_str;
    use crate::model::typed_keys;
    use std::collections::HashSet;

    /// Our own parameters, which Pigsty does not have: not in the table.
    const OURS: &[&str] = &[
        "node_base",
        "node_mac",
        "node_disk",
        "node_ip_prefix",
        "node_gateway",
        "minio_server_bin",
        "prometheus_port",
    ];

    const DOCS: &str = "docs/parameters.md";
    const BEGIN: &str = "<!-- BEGIN generated from src/model/pigsty_params.yml -->";
    const END: &str = "<!-- END generated -->";

    fn status_of(name: &str) -> Option<Status> {
        params().iter().find(|p| p.name == name).map(|p| p.status)
    }

    #[test]
    fn table_parses_with_unique_names_and_reasons() {
        let params = parse(TABLE).unwrap();
        assert!(params.len() > 400, "{}", params.len());
        let mut names = HashSet::new();
        for p in &params {
            assert!(names.insert(p.name.as_str()), "{} is listed twice", p.name);
            let explained = p.reason.as_deref().is_some_and(|r| !r.is_empty());
            assert_eq!(
                explained,
                p.status != Status::Implemented,
                "{}: a reason goes with warned and n/a, and only with them",
                p.name
            );
        }
        let pg_rto = params.iter().find(|p| p.name == "pg_rto_plan").unwrap();
        assert_eq!(
            pg_rto.default["fast"],
            serde_json::json!([20, 5, 5, 15, 5, "1s", "0.5s", "1s", 3, 3])
        );
    }

    #[test]
    fn every_model_key_is_implemented() {
        let defaults = yaml::parse(include_str!("../model/defaults.yml"))
            .unwrap()
            .unwrap();
        let default_keys = defaults
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.name.clone());
        let keys: Vec<String> = typed_keys()
            .map(str::to_string)
            .chain(default_keys)
            .collect();
        for key in keys.iter().map(String::as_str) {
            if OURS.contains(&key) {
                assert_eq!(status_of(key), None, "{key} is ours, not Pigsty's");
            } else {
                assert_eq!(
                    status_of(key),
                    Some(Status::Implemented),
                    "{key} is read by the model: list it as implemented in pigsty_params.yml \
                     (or in OURS if Pigsty has no such parameter)"
                );
            }
        }
    }

    /// Our defaults (model/defaults.yml) are Pigsty 4.5's (the table's `default`),
    /// but for the few listed here, each with why.
    #[test]
    fn our_defaults_are_pigstys() {
        const DIFFER: &[(&str, &str)] = &[
            (
                "node_cluster",
                "unset: the node's pg_cluster, else `nodes`, as Pigsty names it with node_id_from_pg",
            ),
            (
                "pg_packages",
                "the PGSQL module's packages of the base catalog stand for pgsql-main and pgsql-common",
            ),
            (
                "minio_users",
                "Pigsty 4.5's users name the policies pgsql, meta and data that its MinIO role creates; the agent attaches MinIO's built-in consoleAdmin and readwrite",
            ),
        ];
        let defaults = yaml::parse(include_str!("../model/defaults.yml"))
            .unwrap()
            .unwrap()
            .to_json_with(&str::to_string);
        let mut differ = Vec::new();
        for (key, ours) in defaults.as_object().unwrap() {
            let Some(p) = params().iter().find(|p| &p.name == key) else {
                continue;
            };
            if p.default.is_null() || &p.default == ours {
                continue;
            }
            if !DIFFER.iter().any(|(k, _)| k == key) {
                differ.push(format!("{key}: ours {ours}, Pigsty's {}", p.default));
            }
        }
        assert!(
            differ.is_empty(),
            "defaults that differ from Pigsty 4.5:\n{}",
            differ.join("\n")
        );
    }

    /// The docs table, as generated from the table.
    fn docs_table() -> String {
        let mut out = format!(
            "{BEGIN}\n| parameter | module | status | reason / notes |\n|---|---|---|---|\n"
        );
        for p in params() {
            let status = match p.status {
                Status::Implemented => "implemented",
                Status::Warned => "warned",
                Status::NotApplicable => "not applicable",
            };
            let text = p.reason.as_deref().or(p.note.as_deref()).unwrap_or("");
            let text = text.replace('|', "\\|").replace('<', "&lt;");
            out.push_str(&format!(
                "| `{}` | {} | {status} | {text} |\n",
                p.name, p.module
            ));
        }
        out.push_str(END);
        out
    }

    /// docs/parameters.md holds the table generated from pigsty_params.yml, so the two
    /// cannot drift. `PIGSTY_BLESS=1` rewrites it.
    #[test]
    fn docs_list_every_parameter_with_its_status() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCS);
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, rest) = text
            .split_once(BEGIN)
            .expect("docs/parameters.md has the BEGIN marker");
        let (_, tail) = rest
            .split_once(END)
            .expect("docs/parameters.md has the END marker");
        let want = format!("{head}{}{tail}", docs_table());
        let text = if std::env::var_os("PIGSTY_BLESS").is_some() {
            std::fs::write(&path, &want).unwrap();
            want.clone()
        } else {
            text
        };
        assert!(
            text == want,
            "{DOCS} is stale: regenerate it with PIGSTY_BLESS=1 cargo test --lib unimplemented"
        );
        for p in params() {
            assert!(
                text.contains(&format!("| `{}` | {} |", p.name, p.module)),
                "{}",
                p.name
            );
        }
    }

    fn inventory(vars: &str) -> String {
        format!(
            "all:\n  children:\n    pg-x:\n      hosts:\n        10.0.0.1: &one {{ pg_seq: 1, pg_role: primary, node_kernel_modules: [softdog] }}\n        10.0.0.2: {{ pg_seq: 2, pg_role: replica }}\n      vars: {{ pg_cluster: pg-x, node_firewall_mode: none }}\n    also:\n      hosts: {{ 10.0.0.1: *one }}\n  vars:\n{vars}"
        )
    }

    fn unbuilt_warnings(text: &str) -> Vec<Finding> {
        let loaded = load_str("w.yml", text).unwrap();
        loaded
            .warnings
            .into_iter()
            .filter(|f| f.message.contains("has no effect in an image"))
            .collect()
    }

    #[test]
    fn a_non_default_unbuilt_parameter_warns_once_at_its_line() {
        // Line 5: host vars, listed twice through an alias; line 7: group vars read by
        // two hosts; lines 11 and 12: all.vars.
        let w = unbuilt_warnings(&inventory(
            "    nginx_exporter_enabled: false\n    ansible_user: vagrant\n",
        ));
        let at: Vec<(&str, u32)> = w.iter().map(|f| (f.key.as_str(), f.line)).collect();
        assert_eq!(
            at,
            [
                ("node_kernel_modules", 5),
                ("node_firewall_mode", 7),
                ("nginx_exporter_enabled", 11),
                ("ansible_user", 12)
            ],
            "{w:#?}"
        );
        let exporter = &w[2];
        assert!(
            exporter.message.contains("does not build this yet"),
            "{exporter:?}"
        );
        assert_eq!(
            exporter.help.as_deref(),
            Some("no nginx exporter in images")
        );
        assert!(
            !w[3].message.contains("does not build"),
            "ansible_user is n/a: {:?}",
            w[3]
        );
    }

    #[test]
    fn pigstys_default_restated_draws_no_warning() {
        let text = inventory("    nginx_exporter_enabled: yes\n    node_kernel_modules: [ softdog, ip_vs, ip_vs_rr, ip_vs_wrr, ip_vs_sh ]\n")
            .replace("node_firewall_mode: none", "node_firewall_mode: zone")
            .replace("node_kernel_modules: [softdog]", "node_repo_remove: true");
        assert_eq!(unbuilt_warnings(&text), []);
    }
}
