//! MINIO context: the identical volume list, members, and bucket/user setup.

use serde_json::{Value, json};

use crate::model::{Fleet, Node};

/// Template context for MinIO files (`minio` in templates); null on other nodes.
pub fn context(fleet: &Fleet, node: &Node) -> Value {
    let Some(m) = &node.minio else {
        return Value::Null;
    };
    let members = fleet.minio_members(&m.cluster);
    let first = members.first().is_some_and(|f| f.ip == node.ip);
    json!({
        "cluster": m.cluster,
        "name": m.name,
        "seq": m.seq,
        "first": first,
        "volumes": fleet.minio_volumes(&m.cluster),
        "members": members.iter().filter_map(|x| {
            let mm = x.minio.as_ref()?;
            Some(json!({ "name": mm.name, "seq": mm.seq, "ip": x.ip.to_string(), "host": mm.params.minio_node }))
        }).collect::<Vec<_>>(),
    })
}

/// What the first-boot agent needs: endpoints, root keys, buckets and users.
pub fn agent(fleet: &Fleet, node: &Node) -> Value {
    let Some(m) = &node.minio else {
        return Value::Null;
    };
    let p = &m.params;
    let mut ctx = context(fleet, node);
    ctx["port"] = json!(p.minio_port);
    ctx["server_bin"] = json!(p.minio_server_bin);
    ctx["access_key"] = json!(p.minio_access_key);
    ctx["secret_key"] = json!(p.minio_secret_key);
    ctx["buckets"] = json!(p.minio_buckets);
    ctx["users"] = json!(p.minio_users);
    ctx
}
