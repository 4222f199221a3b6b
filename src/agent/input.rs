//! `/etc/pigsty/node.json`, as the agent reads it. Written by `render` (see
//! `render::context::node_json`); every field has a default so an older or newer file
//! still parses, and a missing value shows up as an empty one in the step that needs it.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

pub const NODE_JSON: &str = "etc/pigsty/node.json";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct NodeJson {
    pub schema: u32,
    pub node: NodeInfo,
    pub join: Vec<JoinStep>,
    pub etcd: Option<EtcdInfo>,
    pub pg: Option<PgInfo>,
    pub minio: Option<MinioInfo>,
    /// Read by the redis step (instances with their unit and port).
    pub redis: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct NodeInfo {
    pub ip: String,
    pub nodename: String,
    pub node_cluster: String,
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct JoinStep {
    pub id: String,
    pub after: Vec<String>,
    pub module: String,
    pub action: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct EtcdInfo {
    pub cluster: String,
    /// This node's membership; absent on nodes that are only clients.
    pub member: Option<EtcdMember>,
    pub members: Vec<EtcdPeer>,
    pub initial_cluster: String,
    pub client_urls: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct EtcdMember {
    pub name: String,
    pub seq: u32,
    pub params: EtcdParams,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct EtcdParams {
    pub etcd_data: String,
    pub etcd_port: u16,
    pub etcd_peer_port: u16,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct EtcdPeer {
    pub name: String,
    pub ip: String,
    pub peer_url: String,
    pub client_url: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PgInfo {
    pub cluster: String,
    pub name: String,
    pub role: String,
    pub is_primary: bool,
    pub members: Vec<PgMember>,
    pub port: u16,
    pub patroni_port: u16,
    /// This instance's Patroni REST API (`http://ip:8008`).
    pub patroni_url: String,
    pub namespace: String,
    pub dcs_keys: DcsKeys,
    pub pgbouncer_port: u16,
    pub haproxy_ports: Vec<u16>,
    pub dbsu: String,
    pub data_dir: String,
    pub bin_dir: String,
    pub socket_dir: String,
    /// Applied in order on the primary with psql as the dbsu (idempotent files).
    pub sql_files: Vec<String>,
    pub pgbackrest: PgBackrest,
}

/// Patroni's keys in etcd for this cluster (`/pg/pg-test/leader`, ...).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct DcsKeys {
    pub leader: String,
    pub initialize: String,
    pub config: String,
    pub members: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PgBackrest {
    pub enabled: bool,
    pub stanza: String,
    pub method: String,
    pub config: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PgMember {
    pub name: String,
    pub ip: String,
    pub role: String,
    pub patroni_url: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct MinioInfo {
    pub cluster: String,
    pub name: String,
    pub first: bool,
    pub port: u16,
    pub server_bin: String,
    pub access_key: String,
    pub secret_key: String,
    pub volumes: String,
    pub members: Vec<MinioMember>,
    pub data_dirs: Vec<String>,
    pub buckets: Vec<MinioBucket>,
    pub users: Vec<MinioUser>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct MinioMember {
    pub name: String,
    pub ip: String,
    pub host: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct MinioBucket {
    pub name: String,
    pub versioning: Option<bool>,
    pub lock: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct MinioUser {
    pub access_key: String,
    pub secret_key: String,
    pub policy: String,
}

impl NodeJson {
    pub fn load(root: &Path) -> anyhow::Result<NodeJson> {
        let path = root.join(NODE_JSON);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// The join steps in an order that honours every `after` (file order among equals).
    pub fn ordered_steps(&self) -> anyhow::Result<Vec<JoinStep>> {
        let mut done: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let mut left: Vec<&JoinStep> = self.join.iter().collect();
        while !left.is_empty() {
            let Some(pos) = left.iter().position(|s| {
                s.after
                    .iter()
                    .all(|a| done.contains(a) || !self.has_step(a))
            }) else {
                let ids: Vec<&str> = left.iter().map(|s| s.id.as_str()).collect();
                anyhow::bail!("join steps {} wait for each other", ids.join(", "));
            };
            let step = left.remove(pos);
            done.push(step.id.clone());
            out.push(step.clone());
        }
        Ok(out)
    }

    fn has_step(&self, id: &str) -> bool {
        self.join.iter().any(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str, after: &[&str]) -> JoinStep {
        JoinStep {
            id: id.into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            ..JoinStep::default()
        }
    }

    #[test]
    fn steps_follow_after() {
        let doc = NodeJson {
            join: vec![step("done", &["b"]), step("b", &["a"]), step("a", &[])],
            ..NodeJson::default()
        };
        let ids: Vec<String> = doc
            .ordered_steps()
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["a", "b", "done"]);
    }

    #[test]
    fn a_cycle_is_an_error() {
        let doc = NodeJson {
            join: vec![step("a", &["b"]), step("b", &["a"])],
            ..NodeJson::default()
        };
        assert!(doc.ordered_steps().is_err());
    }

    #[test]
    fn a_minimal_file_parses() {
        let doc: NodeJson =
            serde_json::from_str(r#"{"node":{"nodename":"n"},"etcd":null}"#).unwrap();
        assert_eq!(doc.node.nodename, "n");
        assert!(doc.etcd.is_none() && doc.join.is_empty());
    }
}
