//! What the fleet looks like now, read from etcd, beside what each agent reported: a
//! node whose agent said `done` long ago may have fallen out of its clusters since
//! (its Patroni member key expired, its etcd member was removed). `pigsty status`
//! shows such a node as unhealthy instead of `done`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::etcd;
use crate::model::{Fleet, Node};

/// The clusters' live membership, from one etcd endpoint.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Names of the etcd members that have started.
    pub etcd_started: BTreeSet<String>,
    /// Patroni member keys present now (`/pg/pg-test/members/pg-test-1`).
    pub patroni_keys: BTreeSet<String>,
}

/// Read the live membership of every etcd member and Patroni cluster of the fleet
/// from the first endpoint that answers.
pub fn read_live(
    fleet: &Fleet,
    endpoints: &[String],
    timeout: Duration,
    access: &etcd::Access,
) -> anyhow::Result<Live> {
    let mut errors = Vec::new();
    for url in endpoints {
        match read_from(fleet, url, timeout, access) {
            Ok(live) => return Ok(live),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    anyhow::bail!(
        "no etcd endpoint answered ({}): {}",
        endpoints.join(", "),
        errors.join("; ")
    )
}

fn read_from(
    fleet: &Fleet,
    url: &str,
    timeout: Duration,
    access: &etcd::Access,
) -> anyhow::Result<Live> {
    let client = etcd::Client::with(url, timeout, access)?;
    let mut live = Live::default();
    for m in client.member_list()? {
        if m.started() {
            live.etcd_started.insert(m.name.clone());
        }
    }
    let mut namespaces = BTreeSet::new();
    for node in &fleet.nodes {
        if let Some(pg) = &node.pg {
            namespaces.insert(format!(
                "{}/{}/members/",
                pg.params.pg_namespace, pg.cluster
            ));
        }
    }
    for prefix in namespaces {
        for (key, _) in client.get_prefix(&prefix)? {
            live.patroni_keys.insert(key);
        }
    }
    Ok(live)
}

/// Why a node is not part of its clusters now (empty when it is).
pub fn problems(node: &Node, live: &Live) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &node.etcd
        && !live.etcd_started.contains(&e.name)
    {
        out.push(format!("{} is not a started member of etcd", e.name));
    }
    if let Some(pg) = &node.pg
        && pg.params.patroni_enabled.0
    {
        let key = format!(
            "{}/{}/members/{}",
            pg.params.pg_namespace, pg.cluster, pg.name
        );
        if !live.patroni_keys.contains(&key) {
            out.push(format!(
                "{} is not a member of Patroni cluster {} (no {key} in etcd)",
                pg.name, pg.cluster
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_out_of_its_clusters_has_problems() {
        let fleet = crate::inventory::load(&crate::inventory::Source::BuiltInLab)
            .unwrap()
            .fleet;
        let node = &fleet.nodes[1];
        let mut live = Live::default();
        live.etcd_started.insert("etcd-2".into());
        live.patroni_keys
            .insert("/pg/pg-lab/members/pg-lab-2".into());
        assert!(problems(node, &live).is_empty());
        live.patroni_keys.clear();
        assert_eq!(
            problems(node, &live),
            [
                "pg-lab-2 is not a member of Patroni cluster pg-lab (no /pg/pg-lab/members/pg-lab-2 in etcd)"
            ]
        );
        live.etcd_started.clear();
        assert_eq!(problems(node, &live).len(), 2);
    }
}
