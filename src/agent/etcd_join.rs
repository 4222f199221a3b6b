//! The `etcd` and `etcd-ready` join steps.
//!
//! A member decides from what its peers answer:
//! - nobody answers: bootstrap (or restart on our own data) from the static list;
//! - a cluster answers that lists our peer URL and we have data, or it never saw us
//!   start (initial member, or a learner added by an earlier run): start and catch up;
//! - it lists our name as started but our data dir is empty (a reimaged node): remove
//!   that stale member by id, then join as a new learner;
//! - it does not list us: member add as learner, start with state `existing` and the
//!   full member list, promote once the learner is in sync.

use anyhow::Context;

use super::Agent;
use super::etcd::{Client, Member, answered};
use super::retry::Attempt;
use crate::plan::node_json::{EtcdInfo, EtcdPeer};

const UNIT: &str = "etcd.service";
const STEP: &str = "etcd";

pub fn join(agent: &mut Agent) -> anyhow::Result<String> {
    let info = agent
        .doc
        .etcd
        .clone()
        .context("node.json has no etcd section")?;
    let member = info
        .member
        .clone()
        .context("node.json: this node is not an etcd member")?;
    let me = info
        .members
        .iter()
        .find(|m| m.name == member.name)
        .cloned()
        .with_context(|| format!("node.json: {} is not in etcd.members", member.name))?;
    let data_dir = agent.path(&member.params.etcd_data);
    // Our etcd already running (started by a run of ours that was killed) counts as
    // data, though it may not have written its member dir yet: a live member is
    // never taken for the stale member of a reimaged node.
    let has_data =
        data_dir.join("member").is_dir() || agent.services.is_active(UNIT).unwrap_or(false);
    let local = agent.etcd_client(&me.client_url)?;

    // 1. Ask the other members which cluster exists, and what it knows of us.
    let found = probe_peers(agent, &info, &me.name);
    agent.checkpoint("etcd:probed")?;
    let (detail, learner_of) = match found {
        None => {
            // 2a. Nobody answers: a fresh cluster from the static list (or our own data).
            if !has_data {
                set_cluster(agent, "new", &info.initial_cluster)?;
            }
            let what = if has_data {
                "restarted on its data"
            } else {
                "bootstrapping"
            };
            (format!("{what}: no peer answered"), None)
        }
        Some((peer, members)) => {
            match members.iter().find(|m| m.peer_urls.contains(&me.peer_url)) {
                // 2b. We were a started member but our data is gone: we were reimaged.
                //     (A member of the static list that never started is not stale: it
                //     boots later than its peers and takes its place, below.)
                Some(stale) if stale.started() && !has_data => {
                    wait_cluster_healthy(agent, &peer)?;
                    remove_member(agent, &peer, stale)?;
                    agent.checkpoint("etcd:removed-stale")?;
                    let id = add_learner(agent, &info, &me, &peer)?;
                    (
                        "reimaged: removed the stale member, joined as a learner".to_string(),
                        Some((peer, id)),
                    )
                }
                // 2c. The cluster knows us: initial member, learner added earlier, or our data.
                Some(known) => {
                    if !has_data {
                        // A learner was added by member add (an earlier run of ours):
                        // it can only start into the existing cluster.
                        if known.is_learner || peer.health().is_ok() {
                            set_cluster(agent, "existing", &initial_cluster(&members, &info))?;
                        } else {
                            set_cluster(agent, "new", &info.initial_cluster)?;
                        }
                    }
                    let detail = format!("member of the cluster answering at {}", peer.base());
                    (detail, known.is_learner.then_some((peer, known.id)))
                }
                // 2d. A cluster that does not know us: join it as a learner.
                None => {
                    wait_cluster_healthy(agent, &peer)?;
                    let id = add_learner(agent, &info, &me, &peer)?;
                    (
                        "joined the running cluster as a learner".to_string(),
                        Some((peer, id)),
                    )
                }
            }
        }
    };

    // 3. Start etcd and wait until this member is healthy.
    start(agent)?;
    agent.checkpoint("etcd:started")?;
    wait_local_healthy(agent, &local)?;

    // 4. A learner becomes a voting member once it has caught up.
    let detail = match learner_of {
        Some((peer, id)) => {
            promote(agent, &peer, id)?;
            format!("{detail}; promoted")
        }
        None => detail,
    };
    // A learner serves no auth requests: RBAC once this member votes.
    let rbac = ensure_rbac(agent, &me)?;
    let detail = format!("{detail}{rbac}");
    agent.report_to(local);
    Ok(detail)
}

/// With a fleet CA, RBAC as Pigsty sets it up: root with `etcd_root_password`, then
/// auth on, then a user per PostgreSQL cluster of this etcd, limited to its own keys.
/// Every member ensures it (idempotent, and safe to race); says what it did.
fn ensure_rbac(agent: &Agent, me: &EtcdPeer) -> anyhow::Result<String> {
    let Some(rbac) = agent
        .doc
        .etcd
        .as_ref()
        .and_then(|e| e.access.as_ref())
        .and_then(|a| a.rbac.clone())
    else {
        return Ok(String::new());
    };
    let access = agent.etcd_access()?;
    let anonymous = Client::with(
        &me.client_url,
        agent.opts.request,
        &super::etcd::Access {
            user: None,
            ..access.clone()
        },
    )?;
    agent.opts.policy().wait(
        STEP,
        "etcd auth on, with root",
        anonymous.base(),
        || match anonymous.enable_auth(&rbac.root_password) {
            Ok(()) => Attempt::Ready(()),
            Err(e) => retryable(e),
        },
    )?;
    agent.checkpoint("etcd:auth")?;
    let root = Client::with(&me.client_url, agent.opts.request, &access)?;
    for u in &rbac.users {
        agent.opts.policy().wait(
            STEP,
            &format!("etcd user {}", u.name),
            root.base(),
            || match root.ensure_user(&u.name, &u.password, &u.prefixes, &u.keys) {
                Ok(()) => Attempt::Ready(()),
                Err(e) => retryable(e),
            },
        )?;
    }
    Ok(format!("; auth on, {} cluster user(s)", rbac.users.len()))
}

/// `etcd-ready` on nodes that only use etcd: wait until a member answers healthy.
pub fn wait_ready(agent: &mut Agent) -> anyhow::Result<String> {
    let info = agent
        .doc
        .etcd
        .clone()
        .context("node.json has no etcd section")?;
    let urls = info.client_urls.join(",");
    let client = agent
        .opts
        .policy()
        .wait("etcd-ready", "a healthy etcd member", &urls, || {
            let mut last = Vec::new();
            for url in &info.client_urls {
                match agent.etcd_client(url).and_then(|c| c.health().map(|_| c)) {
                    Ok(c) => return Attempt::Ready(c),
                    Err(e) => last.push(format!("{e:#}")),
                }
            }
            Attempt::NotYet(last.join("; "))
        })?;
    agent.checkpoint("etcd-ready:healthy")?;
    let detail = format!("etcd answers healthy at {}", client.base());
    agent.report_to(client);
    Ok(detail)
}

/// The first healthy endpoint: ours first when we are a member, then the others.
pub fn any_healthy(agent: &Agent) -> Option<Client> {
    first_healthy(agent).ok()
}

/// The first healthy endpoint, or what each endpoint answered (for a wait's last
/// answer: "no leader", "connection refused", ...).
pub fn first_healthy(agent: &Agent) -> Result<Client, String> {
    let Some(info) = agent.doc.etcd.as_ref() else {
        return Err("node.json names no etcd cluster".into());
    };
    let own = info.member.as_ref().map(|m| m.name.as_str());
    let mut peers: Vec<&EtcdPeer> = info.members.iter().collect();
    peers.sort_by_key(|m| Some(m.name.as_str()) != own);
    let mut answers = Vec::new();
    let own_key = format!("{}{}", super::NODES_PREFIX, agent.doc.node.nodename);
    for peer in peers {
        // Healthy, and (with RBAC) our user is accepted: the members create the
        // clusters' users once auth is on, which may be after etcd first answers.
        let usable = agent
            .etcd_client(&peer.client_url)
            .and_then(|c| c.health().map(|_| c))
            .and_then(|c| c.get(&own_key).map(|_| c));
        match usable {
            Ok(client) => return Ok(client),
            Err(e) => answers.push(format!("{e:#}")),
        }
    }
    if answers.is_empty() {
        answers.push("node.json lists no etcd member".into());
    }
    Err(answers.join("; "))
}

/// The first peer that answers a member list, and that list.
fn probe_peers(agent: &Agent, info: &EtcdInfo, own: &str) -> Option<(Client, Vec<Member>)> {
    for peer in info.members.iter().filter(|m| m.name != own) {
        let Ok(client) = agent.etcd_client(&peer.client_url) else {
            continue;
        };
        // Anonymous: the member list needs no user, and a user's token needs quorum,
        // so a cluster that lost it still answers who its members are.
        match client.anonymous().member_list() {
            Ok(members) => {
                tracing::info!(peer = %peer.client_url, members = members.len(), "a cluster answers");
                return Some((client, members));
            }
            Err(e) => tracing::info!(peer = %peer.client_url, "no answer: {e:#}"),
        }
    }
    None
}

fn add_learner(
    agent: &Agent,
    info: &EtcdInfo,
    me: &EtcdPeer,
    peer: &Client,
) -> anyhow::Result<u64> {
    // etcd refuses reconfiguration until every voting member has been connected for
    // a few seconds ("unhealthy cluster"): retry that, bounded.
    let urls = std::slice::from_ref(&me.peer_url);
    let (added, members) =
        agent
            .opts
            .policy()
            .wait(STEP, "member add (learner)", peer.base(), || {
                match peer.member_add_learner(urls) {
                    Ok(done) => Attempt::Ready(done),
                    Err(e) if format!("{e:#}").contains("already exists") => {
                        // An earlier attempt was applied but its answer was lost.
                        match peer.member_list() {
                            Ok(list) => {
                                match list.iter().find(|m| m.peer_urls.contains(&me.peer_url)) {
                                    Some(m) => Attempt::Ready((m.clone(), list.clone())),
                                    None => Attempt::NotYet(format!("{e:#}")),
                                }
                            }
                            Err(e) => Attempt::NotYet(format!("{e:#}")),
                        }
                    }
                    Err(e) => retryable(e),
                }
            })?;
    tracing::info!(id = %format!("{:x}", added.id), "added as a learner");
    agent.checkpoint("etcd:member-added")?;
    let mut list = initial_cluster(&members, info);
    if !list
        .split(',')
        .any(|e| e.ends_with(&format!("={}", me.peer_url)))
    {
        list = format!("{list},{}={}", me.name, me.peer_url);
    }
    set_cluster(
        agent,
        "existing",
        &fix_own_name(&list, &me.name, &me.peer_url),
    )?;
    Ok(added.id)
}

fn remove_member(agent: &Agent, peer: &Client, stale: &Member) -> anyhow::Result<()> {
    agent.opts.policy().wait(
        STEP,
        "member remove of the stale member",
        peer.base(),
        || {
            match peer.member_remove(stale.id) {
                Ok(()) => Attempt::Ready(()),
                // Removed by an earlier attempt whose answer was lost.
                Err(e) if format!("{e:#}").contains("member not found") => Attempt::Ready(()),
                Err(e) => retryable(e),
            }
        },
    )?;
    tracing::info!(id = %format!("{:x}", stale.id), name = %stale.name, "removed the stale member of our name");
    Ok(())
}

/// Transport errors and etcd's "not now" answers are worth another try; any other
/// refusal is not.
fn retryable<T>(e: anyhow::Error) -> Attempt<T> {
    let msg = format!("{e:#}");
    let transient = [
        "unhealthy cluster",
        "not enough started members",
        "leader changed",
        "timed out",
        "no leader",
    ];
    if !answered(&e) || transient.iter().any(|t| msg.contains(t)) {
        Attempt::NotYet(msg)
    } else {
        Attempt::Fatal(e)
    }
}

/// Members that never started have no name yet: ours gets our name.
fn fix_own_name(list: &str, name: &str, peer_url: &str) -> String {
    list.split(',')
        .map(|entry| match entry.split_once('=') {
            Some((_, url)) if url == peer_url => format!("{name}={url}"),
            _ => entry.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `name=peerURL,...` of a member list; unnamed (never started) members are named from
/// the static list by their peer URL.
fn initial_cluster(members: &[Member], info: &EtcdInfo) -> String {
    let mut entries = Vec::new();
    for m in members {
        for url in &m.peer_urls {
            let name = if !m.name.is_empty() {
                m.name.clone()
            } else {
                info.members
                    .iter()
                    .find(|p| &p.peer_url == url)
                    .map_or_else(|| format!("member-{:x}", m.id), |p| p.name.clone())
            };
            entries.push(format!("{name}={url}"));
        }
    }
    entries.join(",")
}

fn set_cluster(agent: &Agent, state: &str, list: &str) -> anyhow::Result<()> {
    tracing::info!(state, list, "etcd initial cluster");
    agent.services.set_env(
        UNIT,
        &[
            ("ETCD_INITIAL_CLUSTER_STATE", state.to_string()),
            ("ETCD_INITIAL_CLUSTER", list.to_string()),
        ],
    )
}

/// Start etcd.service. etcd tells systemd it is ready (Type=notify) only once its
/// cluster has a leader, so a member of a new cluster whose peers boot later, or a
/// member on a machine too busy to finish within systemd's start timeout (90 s),
/// fails `systemctl start` with a timeout while etcd itself is fine. systemd starts
/// it again (Debian's unit: Restart=on-abnormal, which covers a start timeout), so
/// such a failure is not the step's: the bounded health wait that follows decides.
/// Any other failure is.
fn start(agent: &Agent) -> anyhow::Result<()> {
    match agent.services.start(UNIT) {
        Err(e) if format!("{e:#}").contains("a timeout was exceeded") => {
            super::journal(&format!(
                "step {STEP}: {UNIT} did not say it was ready within systemd's start timeout \
                 (its peers may not be up yet); systemd starts it again; waiting for it to be \
                 healthy ({e:#})"
            ));
            Ok(())
        }
        other => other,
    }
}

fn wait_healthy(agent: &Agent, client: &Client, what: &str) -> anyhow::Result<()> {
    agent
        .opts
        .policy()
        .wait(STEP, what, client.base(), || match client.health() {
            Ok(_) => Attempt::Ready(()),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        })?;
    Ok(())
}

/// The member we started: healthy, or the last answer says whether etcd.service is
/// still running (an etcd that exited, on a bad flag or a port taken, refuses
/// connections the same way one still starting does).
fn wait_local_healthy(agent: &Agent, local: &Client) -> anyhow::Result<()> {
    agent.opts.policy().wait(
        STEP,
        "the local member to be healthy",
        local.base(),
        || match local.health() {
            Ok(_) => Attempt::Ready(()),
            Err(e) => match agent.services.is_active(UNIT) {
                Ok(false) => Attempt::NotYet(format!(
                    "{e:#}; {UNIT} is not running (see its log: journalctl -u {UNIT})"
                )),
                _ => Attempt::NotYet(format!("{e:#}")),
            },
        },
    )?;
    Ok(())
}

/// A cluster we change (remove, add) must have quorum, or the change would hang.
fn wait_cluster_healthy(agent: &Agent, peer: &Client) -> anyhow::Result<()> {
    wait_healthy(agent, peer, "the running cluster to have quorum")
}

/// Promote our learner; etcd refuses until the learner is in sync, so retry (bounded).
/// Sent to the leader: etcd 3.4 forwards a promote from a follower without the
/// caller's credentials, which RBAC refuses until the request times out.
fn promote(agent: &Agent, peer: &Client, id: u64) -> anyhow::Result<()> {
    let at_leader = || -> anyhow::Result<Client> {
        let (me, leader) = peer.anonymous().status()?;
        if leader == 0 || leader == me {
            return Ok(peer.clone());
        }
        let members = peer.anonymous().member_list()?;
        match members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_urls.first())
        {
            Some(url) => Ok(peer.at(url)),
            None => Ok(peer.clone()),
        }
    };
    agent
        .opts
        .policy()
        .wait(STEP, "the learner to be promoted", peer.base(), || {
            match at_leader().and_then(|leader| leader.member_promote(id)) {
                Ok(()) => Attempt::Ready(()),
                Err(e) => {
                    let msg = format!("{e:#}");
                    if msg.contains("in sync") || !answered(&e) {
                        Attempt::NotYet(msg)
                    } else if msg.contains("can only promote a learner member") {
                        // Promoted already (by an earlier run that was killed after it).
                        Attempt::Ready(())
                    } else {
                        Attempt::Fatal(e)
                    }
                }
            }
        })?;
    agent.checkpoint("etcd:promoted")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_members_take_static_names() {
        let info = EtcdInfo {
            cluster: "etcd".into(),
            member: None,
            members: vec![EtcdPeer {
                name: "etcd-4".into(),
                seq: 4,
                ip: "h4".into(),
                peer_url: "http://h4:2380".into(),
                client_url: "http://h4:2379".into(),
            }],
            initial_cluster: "etcd-4=http://h4:2380".into(),
            access: None,
            endpoints: vec!["h4:2379".into()],
            client_urls: vec!["http://h4:2379".into()],
        };
        let members = vec![
            Member {
                id: 1,
                name: "etcd-1".into(),
                peer_urls: vec!["http://h1:2380".into()],
                ..Member::default()
            },
            Member {
                id: 0x2a,
                peer_urls: vec!["http://h4:2380".into()],
                ..Member::default()
            },
            Member {
                id: 0x2b,
                peer_urls: vec!["http://h5:2380".into()],
                ..Member::default()
            },
        ];
        assert_eq!(
            initial_cluster(&members, &info),
            "etcd-1=http://h1:2380,etcd-4=http://h4:2380,member-2b=http://h5:2380"
        );
        assert_eq!(
            fix_own_name("member-2b=http://h5:2380", "etcd-5", "http://h5:2380"),
            "etcd-5=http://h5:2380"
        );
    }
}
