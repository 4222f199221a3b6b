//! PGSQL context: cluster members, failover timings, and what the agent needs.

use serde_json::{Value, json};

use crate::model::{Fleet, Node, PgRole};

/// Template context for PGSQL files (`pg` in templates); null on non-PGSQL nodes.
pub fn context(fleet: &Fleet, node: &Node) -> Value {
    let Some(pg) = &node.pg else {
        return Value::Null;
    };
    let p = &pg.params;
    let members: Vec<Value> = fleet
        .pg_members(&pg.cluster)
        .iter()
        .filter_map(|m| {
            let i = m.pg.as_ref()?;
            Some(json!({
                "name": i.name,
                "seq": i.seq,
                "ip": m.ip.to_string(),
                "role": i.role,
                "offline_query": i.params.pg_offline_query.0,
            }))
        })
        .collect();
    json!({
        "cluster": pg.cluster,
        "name": pg.name,
        "seq": pg.seq,
        "role": pg.role,
        "is_primary": pg.role == PgRole::Primary,
        "members": members,
        "rto": p.pg_rto.timings(),
        "synchronous": p.pg_rpo == 0 || p.pg_conf == crate::model::PgConf::Crit,
    })
}

/// What the first-boot agent needs to join Patroni and apply database objects.
pub fn agent(fleet: &Fleet, node: &Node) -> Value {
    let Some(pg) = &node.pg else {
        return Value::Null;
    };
    let p = &pg.params;
    let mut ctx = context(fleet, node);
    ctx["port"] = json!(p.pg_port);
    ctx["patroni_port"] = json!(p.patroni_port);
    ctx["namespace"] = json!(p.pg_namespace);
    ctx["pgbouncer_port"] = json!(p.pgbouncer_port);
    ctx["dbsu"] = json!(p.pg_dbsu);
    ctx
}
