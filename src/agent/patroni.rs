//! The `patroni` join step, over Patroni's REST API and its keys in etcd.
//!
//! The designated primary bootstraps: it starts Patroni and waits for `/primary` to
//! answer 200. A replica waits for the cluster's leader key, starts Patroni (which
//! clones from the leader) and waits until the leader's `/patroni` lists it as
//! streaming. A leftover `initialize` key without a leader, on a primary that never
//! bootstrapped here, would make Patroni wait forever: it is reported instead.

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Agent;
use super::etcd::Client as Etcd;
use super::etcd_join::first_healthy;
use super::retry::Attempt;
use crate::http;
use crate::plan::node_json::PgInfo;

const UNIT: &str = "patroni.service";
const STEP: &str = "patroni";

/// What `GET /patroni` says about replication (zero fields may be missing).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct PatroniStatus {
    pub state: String,
    pub role: String,
    pub replication: Vec<Replication>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct Replication {
    pub application_name: String,
    pub state: String,
    pub client_addr: String,
}

/// A `members/<name>` value: where that member's REST API is.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct MemberKey {
    api_url: String,
}

pub fn join(agent: &mut Agent) -> anyhow::Result<String> {
    let pg = agent
        .doc
        .pg
        .clone()
        .context("node.json has no pg section")?;
    // 1. Patroni can do nothing without its DCS: wait for a healthy etcd.
    let dcs = wait_for_etcd(agent)?;
    let leader = read_key(&dcs, &pg.dcs_keys.leader)?;
    let initialize = read_key(&dcs, &pg.dcs_keys.initialize)?;
    let bootstrapped_here = agent.path(&pg.data_dir).join("PG_VERSION").exists();

    // 2. A leftover `initialize` key with no leader: nobody would ever bootstrap.
    if pg.is_primary && leader.is_none() && initialize.is_some() && !bootstrapped_here {
        let prefix = pg.dcs_keys.leader.trim_end_matches("leader");
        bail!(
            "step {STEP}: {} is set (system id {}) but there is no leader and {} was never \
             bootstrapped here: a leftover of an earlier cluster {}; Patroni would wait for a \
             leader forever. If that cluster is gone, remove its keys \
             (etcdctl del --prefix {prefix}) and run the agent again",
            pg.dcs_keys.initialize,
            initialize.unwrap_or_default(),
            pg.name,
            pg.cluster
        );
    }

    // 3. Bootstrap as the primary, or follow whoever leads; a node that leads already
    //    (the join again after an update, on a replica promoted by a failover)
    //    goes on leading whatever the inventory calls it.
    match leader {
        Some(l) if l != pg.name => {
            let detail = follow(agent, &pg, &dcs)?;
            Ok(if pg.is_primary {
                format!("{detail} (the designated primary rejoined as a replica: {l} leads)")
            } else {
                detail
            })
        }
        Some(_) if !pg.is_primary => Ok(format!(
            "{} (it leads since a failover; the inventory names it a replica)",
            lead(agent, &pg)?
        )),
        _ if pg.is_primary => lead(agent, &pg),
        _ => follow(agent, &pg, &dcs),
    }
}

fn lead(agent: &Agent, pg: &PgInfo) -> anyhow::Result<String> {
    agent.services.start(UNIT)?;
    agent.checkpoint("patroni:started")?;
    let client = agent.patroni_http()?;
    let url = format!("{}/primary", pg.patroni_url);
    agent
        .opts
        .policy()
        .wait(STEP, "/primary to answer 200", &url, || {
            match http::get(&client, &url) {
                Ok((200, _)) => Attempt::Ready(()),
                Ok((code, body)) => Attempt::NotYet(format!("HTTP {code}: {}", http::brief(&body))),
                Err(e) => Attempt::NotYet(format!("{e:#}")),
            }
        })?;
    Ok(format!("{} leads {}", pg.name, pg.cluster))
}

fn follow(agent: &Agent, pg: &PgInfo, dcs: &Etcd) -> anyhow::Result<String> {
    // Patroni would start and wait too, but without a bound and without saying why.
    let leader_key = &pg.dcs_keys.leader;
    let peer = format!("{} (etcd key {leader_key})", dcs.base());
    let leader = agent.opts.policy().wait(STEP, "the leader key", &peer, || {
        match read_key(dcs, leader_key) {
            Ok(Some(name)) => Attempt::Ready(name),
            Ok(None) => match read_key(dcs, &pg.dcs_keys.initialize) {
                Ok(Some(_)) => Attempt::NotYet(format!(
                    "no leader; {} is set (a bootstrap in progress, or a leftover of an earlier cluster)",
                    pg.dcs_keys.initialize
                )),
                _ => Attempt::NotYet("no leader and no initialize key: the primary has not started".into()),
            },
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        }
    })?;
    agent.checkpoint("patroni:leader-seen")?;
    agent.services.start(UNIT)?;
    agent.checkpoint("patroni:started")?;

    // The leader's own view is the one that counts: it lists us once we stream.
    let api = leader_api(dcs, pg, &leader);
    let url = format!("{api}/patroni");
    let client = agent.patroni_http()?;
    agent.opts.policy().wait(
        STEP,
        &format!("{} to stream from {leader}", pg.name),
        &url,
        || match http::get(&client, &url) {
            Ok((200, body)) => {
                let status: PatroniStatus = serde_json::from_str(&body).unwrap_or_default();
                let streaming = status
                    .replication
                    .iter()
                    .any(|r| r.application_name == pg.name && r.state == "streaming");
                if streaming {
                    return Attempt::Ready(());
                }
                let seen: Vec<String> = status
                    .replication
                    .iter()
                    .map(|r| format!("{}:{}", r.application_name, r.state))
                    .collect();
                Attempt::NotYet(format!(
                    "leader {leader} ({}) replicates to [{}]",
                    status.role,
                    seen.join(", ")
                ))
            }
            Ok((code, body)) => Attempt::NotYet(format!("HTTP {code}: {}", http::brief(&body))),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        },
    )?;
    Ok(format!("{} streams from {leader}", pg.name))
}

/// The leader's REST API: from its member key, else from the inventory's members.
fn leader_api(dcs: &Etcd, pg: &PgInfo, leader: &str) -> String {
    let key = format!("{}{leader}", pg.dcs_keys.members);
    if let Ok(Some(text)) = read_key(dcs, &key)
        && let Ok(m) = serde_json::from_str::<MemberKey>(&text)
        && !m.api_url.is_empty()
    {
        // api_url ends with /patroni.
        return m.api_url.trim_end_matches("/patroni").to_string();
    }
    pg.members
        .iter()
        .find(|m| m.name == leader)
        .map_or_else(String::new, |m| m.patroni_url.clone())
}

/// The cluster's leader when it is another member (the designated primary is
/// rejoining after a failover); None when this node leads, nobody does yet, or no
/// etcd member answers.
pub(crate) fn leader_elsewhere(agent: &Agent, pg: &PgInfo) -> Option<String> {
    let dcs = first_healthy(agent).ok()?;
    read_key(&dcs, &pg.dcs_keys.leader)
        .ok()
        .flatten()
        .filter(|l| *l != pg.name)
}

fn wait_for_etcd(agent: &Agent) -> anyhow::Result<Etcd> {
    let urls = agent
        .doc
        .etcd
        .as_ref()
        .map(|e| e.client_urls.join(","))
        .unwrap_or_default();
    Ok(agent
        .opts
        .policy()
        .wait(
            STEP,
            "a healthy etcd (Patroni's DCS)",
            &urls,
            || match first_healthy(agent) {
                Ok(c) => Attempt::Ready(c),
                Err(answers) => {
                    Attempt::NotYet(format!("no etcd member answers healthy: {answers}"))
                }
            },
        )?)
}

fn read_key(dcs: &Etcd, key: &str) -> anyhow::Result<Option<String>> {
    Ok(dcs
        .get(key)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}
