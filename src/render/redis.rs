//! REDIS context: one entry per instance, with its upstream when it is a replica.

use serde_json::{Value, json};

use crate::model::{Fleet, Node};

/// Template context for redis files (`redis` in templates); null on other nodes.
pub fn context(_fleet: &Fleet, node: &Node) -> Value {
    let Some(r) = &node.redis else {
        return Value::Null;
    };
    let instances: Vec<Value> = r
        .instances
        .iter()
        .map(|(port, inst)| {
            json!({
                "name": inst.name,
                "port": port,
                "replica_of": inst.replica_of.map(|(ip, p)| format!("{ip} {p}")),
            })
        })
        .collect();
    json!({ "cluster": r.cluster, "node": r.node, "name": r.name, "instances": instances })
}
