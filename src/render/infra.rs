//! INFRA context: what Prometheus scrapes (every exporter of every node).

use serde_json::{Value, json};

use crate::model::{Fleet, Node};

/// Template context for infra files (`infra` in templates); null on other nodes.
pub fn context(fleet: &Fleet, node: &Node) -> Value {
    if node.infra.is_none() {
        return Value::Null;
    }
    let nodes: Vec<Value> = fleet
        .nodes
        .iter()
        .map(|n| json!({ "ip": n.ip.to_string(), "nodename": n.nodename, "exporter_port": n.node.node_exporter_port }))
        .collect();
    json!({ "nodes": nodes })
}
