//! What compile produces for one node: the [`NodePlan`] (image contents and the ordered
//! join steps of its first-boot agent), and the agent's input file [`node_json`].
//! Plain data shared by `render`, `compile`, `image` and the agent; it depends on the
//! typed [`model`](crate::model) only.

pub mod node_json;
pub mod sizing;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Module;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePlan {
    pub node: PlanNode,
    pub modules: Vec<Module>,
    pub image: ImageBase,
    pub packages: Vec<String>,
    pub files: Vec<PlanFile>,
    pub services: Vec<String>,
    pub join: Vec<JoinStep>,
    /// sha256 of everything above: the image's content address.
    pub digest: String,
}

impl NodePlan {
    /// `/etc/pigsty/image.json`: which plan the image was built from, added by the
    /// build beside the plan's files (it cannot be one of them: it names their
    /// digest). The agent reports it to etcd, where `pigsty diff` reads what each node
    /// runs.
    pub fn identity(&self) -> ImageIdentity {
        ImageIdentity {
            node: self.node.nodename.clone(),
            plan_digest: self.digest.clone(),
            tool: concat!("pigsty ", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Where an image says which plan it was built from.
pub const IDENTITY_PATH: &str = "/etc/pigsty/image.json";

/// The content of [`IDENTITY_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIdentity {
    pub node: String,
    pub plan_digest: String,
    pub tool: String,
}

impl ImageIdentity {
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// The identity under a node's root, when its image has one.
    pub fn read(root: &std::path::Path) -> Option<ImageIdentity> {
        let path = root.join(IDENTITY_PATH.trim_start_matches('/'));
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanNode {
    pub ip: String,
    pub nodename: String,
    pub node_cluster: String,
    /// Every name `--role` accepts for this node.
    pub names: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageBase {
    pub name: String,
    pub suite: String,
    pub architecture: String,
    /// Where its packages come from, the base's archive first.
    pub repositories: Vec<crate::model::Repository>,
}

/// A file in the node overlay. `mode` is an octal string (`0640`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanFile {
    pub path: String,
    pub mode: String,
    pub owner: String,
    pub sha256: String,
}

/// One step of the first-boot join; `after` names steps of the same node. The plan
/// and node.json carry it alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinStep {
    pub id: StepId,
    pub after: Vec<StepId>,
    pub module: Module,
    pub action: String,
}

/// Every join step the agent knows. Written as kebab-case strings (`etcd-ready`) in
/// the plan, node.json and the agent's state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    /// Join (or bootstrap) the etcd cluster as a member.
    Etcd,
    /// Wait for the etcd cluster as a client.
    EtcdReady,
    /// Start the local MinIO server.
    Minio,
    /// Create buckets and users (the cluster's first member).
    MinioBuckets,
    /// Wait for MinIO write quorum as a client (the backup repository).
    MinioReady,
    Patroni,
    Pgbouncer,
    Haproxy,
    PgUsers,
    PgDatabases,
    /// Create the pgBackRest stanza as soon as the primary runs, so that WAL archiving
    /// works from the start instead of failing until the backup step.
    PgbackrestStanza,
    /// Take the first full backup.
    Pgbackrest,
    Redis,
    Infra,
    /// Write the done marker.
    Done,
}

impl StepId {
    pub const ALL: [StepId; 15] = [
        StepId::Etcd,
        StepId::EtcdReady,
        StepId::Minio,
        StepId::MinioBuckets,
        StepId::MinioReady,
        StepId::Patroni,
        StepId::Pgbouncer,
        StepId::Haproxy,
        StepId::PgUsers,
        StepId::PgDatabases,
        StepId::PgbackrestStanza,
        StepId::Pgbackrest,
        StepId::Redis,
        StepId::Infra,
        StepId::Done,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::Etcd => "etcd",
            StepId::EtcdReady => "etcd-ready",
            StepId::Minio => "minio",
            StepId::MinioBuckets => "minio-buckets",
            StepId::MinioReady => "minio-ready",
            StepId::Patroni => "patroni",
            StepId::Pgbouncer => "pgbouncer",
            StepId::Haproxy => "haproxy",
            StepId::PgUsers => "pg-users",
            StepId::PgDatabases => "pg-databases",
            StepId::PgbackrestStanza => "pgbackrest-stanza",
            StepId::Pgbackrest => "pgbackrest",
            StepId::Redis => "redis",
            StepId::Infra => "infra",
            StepId::Done => "done",
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_serialize_as_their_names() {
        for id in StepId::ALL {
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{}\"", id.as_str()));
            assert_eq!(serde_json::from_str::<StepId>(&json).unwrap(), id);
        }
    }
}
