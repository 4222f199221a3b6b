//! MINIO context: the identical volume list, members, this node's data directories,
//! and bucket/user setup for the agent.

use serde_json::{Value, json};

use crate::model::paths::minio_data_dirs as data_dirs;
use crate::model::{Fleet, Node};
use crate::plan::node_json::{MinioBucket, MinioInfo, MinioMember, MinioUser};

/// Template context for MinIO files (`minio` in templates); null on other nodes.
/// `invalid` holds a message when `minio_data` cannot be expanded; the templates
/// that need the directories refuse to render with it.
pub fn context(fleet: &Fleet, node: &Node) -> Value {
    let Some(m) = &node.minio else {
        return Value::Null;
    };
    let members = fleet.minio_members(&m.cluster);
    let first = members.first().is_some_and(|f| f.ip == node.ip);
    let (data_dirs, invalid) = match data_dirs(&m.params.minio_data) {
        Ok(dirs) => (dirs, None),
        Err(e) => (
            Vec::new(),
            Some(format!("minio_data {:?}: {e}", m.params.minio_data)),
        ),
    };
    json!({
        "cluster": m.cluster,
        "name": m.name,
        "seq": m.seq,
        "first": first,
        "volumes": fleet.minio_volumes(&m.cluster),
        "data_dirs": data_dirs,
        "invalid": invalid,
        "members": members.iter().filter_map(|x| {
            let mm = x.minio.as_ref()?;
            Some(json!({ "name": mm.name, "seq": mm.seq, "ip": x.ip.to_string(), "host": mm.params.minio_node }))
        }).collect::<Vec<_>>(),
    })
}

/// What the first-boot agent needs: endpoints, root keys, buckets and users. The data
/// directories are empty when `minio_data` cannot be expanded: the render of the
/// files that need them fails first. Buckets and users are made by the first member
/// alone (its `minio-buckets` step), so only its image holds the users' secrets.
pub fn agent(fleet: &Fleet, node: &Node) -> Option<MinioInfo> {
    let m = node.minio.as_ref()?;
    let p = &m.params;
    let members = fleet.minio_members(&m.cluster);
    let first = members.first().is_some_and(|f| f.ip == node.ip);
    Some(MinioInfo {
        cluster: m.cluster.clone(),
        name: m.name.clone(),
        seq: m.seq,
        first,
        port: p.minio_port,
        https: node.minio_https(),
        server_bin: p.minio_server_bin.clone(),
        access_key: p.minio_access_key.clone(),
        secret_key: p.minio_secret_key.clone(),
        volumes: fleet.minio_volumes(&m.cluster).unwrap_or_default(),
        members: members
            .iter()
            .filter_map(|x| {
                let mm = x.minio.as_ref()?;
                Some(MinioMember {
                    name: mm.name.clone(),
                    seq: mm.seq,
                    ip: x.ip.to_string(),
                    host: mm.params.minio_node.clone(),
                })
            })
            .collect(),
        data_dirs: data_dirs(&p.minio_data).unwrap_or_default(),
        buckets: p
            .minio_buckets
            .iter()
            .map(|b| MinioBucket {
                name: b.name.clone(),
                versioning: b.versioning.map(|f| f.0),
                lock: b.lock.map(|f| f.0),
            })
            .collect(),
        users: p
            .minio_users
            .iter()
            .filter(|_| first)
            .map(|u| MinioUser {
                access_key: u.access_key.clone(),
                secret_key: u.secret_key.clone(),
                policy: u.policy.clone(),
            })
            .collect(),
    })
}
