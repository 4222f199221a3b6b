//! `/etc/pigsty/node.json`: the first-boot agent's input, one typed document that
//! `render` writes and the agent reads back, so a renamed field is a compile error on
//! one side or a parse error naming the field on the node, never a silently empty value.
//!
//! Unknown fields are ignored (an older agent may read a file with a newer minor
//! addition); a file whose `schema` is newer than [`NODE_JSON_SCHEMA`] is refused.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::{JoinStep, StepId};
use crate::model::{Module, NodeTune, PgRole, RedisMode};

/// Where node.json sits under a node's root.
pub const NODE_JSON: &str = "etc/pigsty/node.json";

/// The format version render writes. Bump it when an agent that knows only the
/// previous version would misread the file (a field removed, renamed or changed in
/// meaning, or a new join step, which an older agent cannot run); adding a field the
/// older agent may ignore needs no bump.
pub const NODE_JSON_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeJson {
    pub schema: u32,
    pub pigsty: PigstyInfo,
    pub node: NodeInfo,
    pub join: Vec<JoinStep>,
    /// The etcd cluster this node is a member or client of; none on other nodes.
    pub etcd: Option<EtcdInfo>,
    pub pg: Option<PgInfo>,
    pub minio: Option<MinioInfo>,
    pub redis: Option<RedisInfo>,
}

/// Which pigsty wrote the file, from which inventory (its file name only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PigstyInfo {
    pub version: String,
    pub inventory: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub ip: String,
    pub nodename: String,
    pub node_cluster: String,
    pub modules: Vec<Module>,
    /// `node_tune`: the profile whose memory-derived kernel settings the agent sets at
    /// each boot (`none`: the kernel's own).
    #[serde(default = "default_tune")]
    pub tune: NodeTune,
    /// The ports haproxy listens on (admin page, then every service); empty when the
    /// node runs no haproxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub haproxy_ports: Vec<u16>,
}

fn default_tune() -> NodeTune {
    NodeTune::None
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdInfo {
    pub cluster: String,
    /// This node's membership; none on nodes that are only clients.
    pub member: Option<EtcdMember>,
    pub members: Vec<EtcdPeer>,
    /// `name=peer_url,...` of every member, as etcd's `--initial-cluster` takes it.
    pub initial_cluster: String,
    /// `ip:port` of every member.
    pub endpoints: Vec<String>,
    pub client_urls: Vec<String>,
    /// How this node's agent reaches the cluster when the fleet has a CA: TLS with
    /// the node's certificate, and its etcd user. None: plain http, no auth.
    #[serde(default)]
    pub access: Option<EtcdAccess>,
}

/// The agent's way into a secured etcd (paths on the node, and its RBAC user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdAccess {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub user: String,
    pub password: String,
    /// On members only: what RBAC must hold (root and one user per PostgreSQL
    /// cluster of this etcd); the members set it up once the cluster answers.
    #[serde(default)]
    pub rbac: Option<EtcdRbac>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdRbac {
    pub root_password: String,
    pub users: Vec<EtcdUser>,
}

/// An etcd user with a role of its own name over these key prefixes and keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdUser {
    pub name: String,
    pub password: String,
    pub prefixes: Vec<String>,
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdMember {
    pub name: String,
    pub seq: u32,
    pub params: EtcdMemberParams,
}

/// The member's own etcd parameters, under their inventory names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdMemberParams {
    pub etcd_data: String,
    pub etcd_port: u16,
    pub etcd_peer_port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdPeer {
    pub name: String,
    pub seq: u32,
    pub ip: String,
    pub peer_url: String,
    pub client_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgInfo {
    pub cluster: String,
    pub name: String,
    pub seq: u32,
    pub role: PgRole,
    pub ip: String,
    pub is_primary: bool,
    pub members: Vec<PgMember>,
    pub version: u32,
    pub port: u16,
    pub dbsu: String,
    pub patroni_port: u16,
    /// This instance's Patroni REST API (`http://ip:8008`).
    pub patroni_url: String,
    pub namespace: String,
    pub dcs_keys: DcsKeys,
    pub pgbouncer_port: u16,
    pub data_dir: String,
    pub bin_dir: String,
    pub socket_dir: String,
    /// The upstream a standby cluster's leader replays (`pg_upstream`).
    pub standby_of: Option<String>,
    /// Applied in order on a writable primary with psql as the dbsu (idempotent files).
    pub sql_files: Vec<String>,
    pub pgbackrest: PgBackrest,
    /// What the machine-sized parameters depend on (`pigsty agent tune`).
    #[serde(default)]
    pub sizing: Option<crate::plan::sizing::PgSizing>,
    /// Where the data filesystem is measured: `pg_fs_main`, then `pg_data`.
    #[serde(default)]
    pub fs_paths: Vec<String>,
    /// The rendered Patroni configuration, with its sized lines marked.
    #[serde(default)]
    pub patroni_config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgMember {
    pub name: String,
    pub seq: u32,
    pub ip: String,
    pub role: PgRole,
    pub offline_query: bool,
    pub patroni_url: String,
}

/// Patroni's keys in etcd for this cluster (`/pg/pg-test/leader`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DcsKeys {
    pub leader: String,
    pub initialize: String,
    pub config: String,
    pub members: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgBackrest {
    pub enabled: bool,
    pub stanza: String,
    pub method: String,
    pub config: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioInfo {
    pub cluster: String,
    pub name: String,
    pub seq: u32,
    /// Whether this node creates the buckets and users.
    pub first: bool,
    pub port: u16,
    /// Whether the members serve https (`minio_https` with the fleet CA): clients
    /// then trust the CA at /etc/pki/ca.crt alone.
    #[serde(default)]
    pub https: bool,
    pub server_bin: String,
    pub access_key: String,
    pub secret_key: String,
    /// The volume expression every member serves (`MINIO_VOLUMES`).
    pub volumes: String,
    pub members: Vec<MinioMember>,
    pub data_dirs: Vec<String>,
    pub buckets: Vec<MinioBucket>,
    pub users: Vec<MinioUser>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioMember {
    pub name: String,
    pub seq: u32,
    pub ip: String,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioBucket {
    pub name: String,
    pub versioning: Option<bool>,
    pub lock: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioUser {
    pub access_key: String,
    pub secret_key: String,
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisInfo {
    pub cluster: String,
    pub node: u32,
    pub name: String,
    pub mode: RedisMode,
    pub instances: Vec<RedisInstance>,
    /// `redis_password`, for the agent's own connections; empty when there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// `redis_mode: cluster`: every instance of the cluster in inventory order
    /// (`redis_node`, then port). The first one's node forms the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<RedisMember>,
    /// `redis_cluster_replicas`: replicas per primary when the cluster is formed.
    #[serde(default)]
    pub replicas: u32,
}

/// One instance of a Redis Cluster, as its peers reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisMember {
    pub name: String,
    pub ip: String,
    pub port: u16,
}

/// One redis instance: the unit that runs it and the port it listens on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisInstance {
    pub name: String,
    pub port: u16,
    pub unit: String,
}

/// node.json was written for a newer agent than the one reading it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: schema {found} is newer than this agent knows (schema {known}): the agent \
     is older than the pigsty that rendered the file. Rebuild the image with one pigsty \
     release for both (`pigsty build image` puts its own agent beside its node.json)"
)]
pub struct TooNew {
    pub path: String,
    pub found: u32,
    pub known: u32,
}

impl NodeJson {
    /// The file's bytes: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("node.json serializes");
        out.push(b'\n');
        out
    }

    /// Read `<root>/etc/pigsty/node.json`.
    pub fn load(root: &Path) -> anyhow::Result<NodeJson> {
        let path = root.join(NODE_JSON);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        NodeJson::parse(&bytes, &path.display().to_string())
    }

    /// Parse node.json (`path` names it in errors): the schema is checked first, so a
    /// newer file is refused as such rather than by one of its fields.
    pub fn parse(bytes: &[u8], path: &str) -> anyhow::Result<NodeJson> {
        #[derive(Deserialize)]
        struct Header {
            schema: u32,
        }
        let header: Header = serde_json::from_slice(bytes)
            .with_context(|| format!("parsing {path}: reading its schema"))?;
        if header.schema > NODE_JSON_SCHEMA {
            return Err(TooNew {
                path: path.to_string(),
                found: header.schema,
                known: NODE_JSON_SCHEMA,
            }
            .into());
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let at = e.path().to_string();
            anyhow::anyhow!("parsing {path}: at {at}: {}", e.into_inner())
        })
    }

    /// The join steps in an order that honours every `after` (file order among equals).
    pub fn ordered_steps(&self) -> anyhow::Result<Vec<JoinStep>> {
        let mut done: Vec<StepId> = Vec::new();
        let mut out = Vec::new();
        let mut left: Vec<&JoinStep> = self.join.iter().collect();
        while !left.is_empty() {
            let Some(pos) = left.iter().position(|s| {
                s.after
                    .iter()
                    .all(|a| done.contains(a) || !self.has_step(*a))
            }) else {
                let ids: Vec<&str> = left.iter().map(|s| s.id.as_str()).collect();
                anyhow::bail!("join steps {} wait for each other", ids.join(", "));
            };
            let step = left.remove(pos);
            done.push(step.id);
            out.push(step.clone());
        }
        Ok(out)
    }

    fn has_step(&self, id: StepId) -> bool {
        self.join.iter().any(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: StepId, after: &[StepId]) -> JoinStep {
        JoinStep {
            id,
            after: after.to_vec(),
            module: Module::Node,
            action: String::new(),
        }
    }

    fn doc(join: Vec<JoinStep>) -> NodeJson {
        NodeJson {
            schema: NODE_JSON_SCHEMA,
            pigsty: PigstyInfo {
                version: "0".into(),
                inventory: "t.yml".into(),
            },
            node: NodeInfo {
                ip: "10.0.0.1".into(),
                nodename: "n".into(),
                node_cluster: "c".into(),
                modules: vec![Module::Node],
                tune: NodeTune::Oltp,
                haproxy_ports: vec![],
            },
            join,
            etcd: None,
            pg: None,
            minio: None,
            redis: None,
        }
    }

    #[test]
    fn steps_follow_after() {
        use StepId::*;
        let d = doc(vec![
            step(Done, &[Patroni]),
            step(Patroni, &[EtcdReady]),
            step(EtcdReady, &[]),
        ]);
        let ids: Vec<StepId> = d.ordered_steps().unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [EtcdReady, Patroni, Done]);
    }

    #[test]
    fn a_cycle_is_an_error() {
        use StepId::*;
        let d = doc(vec![step(Etcd, &[Minio]), step(Minio, &[Etcd])]);
        let err = d.ordered_steps().unwrap_err().to_string();
        assert!(err.contains("etcd, minio wait for each other"), "{err}");
    }

    #[test]
    fn a_file_round_trips_and_unknown_fields_are_ignored() {
        let d = doc(vec![step(StepId::Done, &[])]);
        let mut v: serde_json::Value = serde_json::from_slice(&d.to_bytes()).unwrap();
        v["added_later"] = serde_json::json!({"x": 1});
        v["node"]["also_new"] = serde_json::json!(true);
        let back = NodeJson::parse(&serde_json::to_vec(&v).unwrap(), "node.json").unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_newer_schema_is_refused_naming_file_and_versions() {
        let mut v = serde_json::to_value(doc(vec![])).unwrap();
        v["schema"] = serde_json::json!(NODE_JSON_SCHEMA + 1);
        // A newer file may differ anywhere: the schema is judged before any field.
        v["node"] = serde_json::json!("reshaped");
        let err = NodeJson::parse(&serde_json::to_vec(&v).unwrap(), "/r/etc/pigsty/node.json")
            .unwrap_err();
        let too_new = err.downcast_ref::<TooNew>().expect("a TooNew error");
        assert_eq!(
            (too_new.found, too_new.known),
            (NODE_JSON_SCHEMA + 1, NODE_JSON_SCHEMA)
        );
        let msg = err.to_string();
        assert!(msg.contains("/r/etc/pigsty/node.json"), "{msg}");
        assert!(
            msg.contains(&format!("schema {}", NODE_JSON_SCHEMA + 1))
                && msg.contains(&format!("schema {NODE_JSON_SCHEMA}")),
            "{msg}"
        );
        assert!(msg.contains("Rebuild the image"), "{msg}");
    }

    #[test]
    fn a_missing_required_field_is_an_error_naming_it() {
        let mut v = serde_json::to_value(doc(vec![])).unwrap();
        v["node"].as_object_mut().unwrap().remove("nodename");
        let err = NodeJson::parse(&serde_json::to_vec(&v).unwrap(), "node.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `nodename`"), "{err}");
        assert!(err.contains("at node"), "{err}");
    }

    #[test]
    fn an_unknown_step_is_an_error_naming_it() {
        let mut v = serde_json::to_value(doc(vec![step(StepId::Done, &[])])).unwrap();
        v["join"][0]["id"] = serde_json::json!("reboot");
        let err = NodeJson::parse(&serde_json::to_vec(&v).unwrap(), "node.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `reboot`"), "{err}");
    }
}
