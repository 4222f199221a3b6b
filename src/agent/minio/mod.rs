//! MinIO-compatible servers (MinIO, RustFS, Silo): the `minio` step starts the local
//! member (every member has the same volume list) and waits for
//! `/minio/health/cluster`; `minio-buckets`, on the first member, creates the buckets
//! with SigV4-signed S3 requests (409 means it exists already).
//!
//! Users and policies go through MinIO's admin API (`/minio/admin/v3`), whose
//! sensitive request bodies are encrypted with the root secret in madmin's format
//! ([`madmin::encrypt_data`]). A server without that API (RustFS, Silo) is not an
//! error: the detail names the users left for the operator.
//!
//! [`sigv4`] signs, [`madmin`] encrypts, [`s3`] is the client; this file holds the
//! join steps.

pub mod madmin;
pub mod s3;
pub mod sigv4;

use anyhow::Context;

use super::Agent;
use super::retry::Attempt;
use crate::http;
use crate::plan::node_json::MinioInfo;
use s3::{
    Made, S3, create_bucket, enable_versioning, policy_exists, probe_admin, put_user,
    set_user_policy, user_exists,
};

const UNIT: &str = "minio.service";
const BUCKETS: &str = "minio-buckets";

/// The node's minio section, and the URL of its own member.
fn local(agent: &Agent) -> anyhow::Result<(MinioInfo, String)> {
    let m = agent
        .doc
        .minio
        .clone()
        .context("node.json has no minio section")?;
    let me = m
        .members
        .iter()
        .find(|x| x.name == m.name)
        .with_context(|| format!("node.json: {} is not in minio.members", m.name))?;
    let scheme = if m.https { "https" } else { "http" };
    let base = format!("{scheme}://{}:{}", me.ip, m.port);
    Ok((m, base))
}

/// A client of the local member: over https it trusts the fleet CA alone, so a
/// server without a certificate from it is refused in the handshake.
fn client(agent: &Agent, m: &MinioInfo) -> anyhow::Result<http::Client> {
    if !m.https {
        return agent.opts.http();
    }
    let ca = agent.path(crate::render::context::NODE_CA);
    let pem = std::fs::read_to_string(&ca)
        .with_context(|| format!("reading the fleet CA {}", ca.display()))?;
    http::client_trusting(agent.opts.request, agent.opts.request, &pem)
}

/// Wait until `/minio/health/cluster` answers 200 (write quorum).
fn wait_cluster(agent: &Agent, m: &MinioInfo, step: &str, base: &str) -> anyhow::Result<()> {
    let client = client(agent, m)?;
    let url = format!("{base}/minio/health/cluster");
    agent.opts.policy().wait(
        step,
        "/minio/health/cluster to answer 200 (write quorum)",
        &url,
        || match http::get(&client, &url) {
            Ok((200, _)) => Attempt::Ready(()),
            Ok((code, body)) => Attempt::NotYet(format!("HTTP {code} {}", http::brief(&body))),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        },
    )?;
    Ok(())
}

/// `minio`: start the local member and wait for the cluster's write quorum.
pub fn start(agent: &mut Agent) -> anyhow::Result<String> {
    let (m, base) = local(agent)?;
    agent.services.start(UNIT)?;
    agent.checkpoint("minio:started")?;
    wait_cluster(agent, &m, "minio", &base)?;
    Ok(format!(
        "{} ({}) serves {} with write quorum",
        m.name, m.server_bin, m.volumes
    ))
}

/// `minio-buckets`: on the first member, create the buckets, then the users.
pub fn buckets(agent: &mut Agent) -> anyhow::Result<String> {
    let (m, base) = local(agent)?;
    wait_cluster(agent, &m, BUCKETS, &base)?;
    let s3 = S3::new(&base, &m.access_key, &m.secret_key, client(agent, &m)?);
    let (mut created, mut existed) = (Vec::new(), Vec::new());
    for b in &m.buckets {
        let lock = b.lock.unwrap_or(false);
        let made = wait_for(agent, &s3, &format!("PUT /{}", b.name), || {
            create_bucket(&s3, &b.name, lock)
        })?;
        if b.versioning.unwrap_or(false) {
            wait_for(agent, &s3, &format!("versioning of {}", b.name), || {
                enable_versioning(&s3, &b.name)
            })?;
        }
        match made {
            Made::Created => created.push(b.name.clone()),
            Made::Existed => existed.push(b.name.clone()),
        }
        agent.checkpoint(&format!("minio-buckets:{}", b.name))?;
    }
    let users = users(agent, &s3, &m)?;
    Ok(format!(
        "buckets created [{}], already there [{}]; {users}",
        created.join(", "),
        existed.join(", ")
    ))
}

/// Wait, within `minio-buckets`, until one S3 or admin call is done.
fn wait_for<T>(
    agent: &Agent,
    s3: &S3,
    what: &str,
    call: impl FnMut() -> Attempt<T>,
) -> anyhow::Result<T> {
    Ok(agent.opts.policy().wait(BUCKETS, what, &s3.base, call)?)
}

/// Users and their policies through the admin API. A server without it (RustFS,
/// Silo, or one that answers 404/501 there) is not an error: the buckets are made,
/// and the detail names the users left for the operator.
fn users(agent: &Agent, s3: &S3, m: &MinioInfo) -> anyhow::Result<String> {
    if m.users.is_empty() {
        return Ok("no users to create".into());
    }
    if let Err(why) = probe_admin(s3) {
        let names: Vec<&str> = m.users.iter().map(|u| u.access_key.as_str()).collect();
        let note = format!("users [{}] not created: {why}", names.join(", "));
        tracing::warn!("{note}");
        return Ok(note);
    }
    // Policies first: a user is only pointed at a policy the server has.
    let (present, missing) = policies(agent, s3, m)?;
    let (mut created, mut existed, mut attached) = (Vec::new(), Vec::new(), Vec::new());
    for u in &m.users {
        let name = u.access_key.as_str();
        let there = wait_for(agent, s3, &format!("user-info {name}"), || {
            user_exists(s3, name)
        })?;
        wait_for(agent, s3, &format!("add-user {name}"), || {
            put_user(s3, name, &u.secret_key)
        })?;
        if let Some(policy) = u.policy.as_deref()
            && present.contains(&policy)
        {
            wait_for(agent, s3, &format!("policy {policy} for {name}"), || {
                set_user_policy(s3, name, policy)
            })?;
            attached.push(format!("{name}={policy}"));
        }
        if there { &mut existed } else { &mut created }.push(name);
        agent.checkpoint(&format!("minio-user:{name}"))?;
    }
    let note = format!(
        "users created [{}], already there [{}]; policies already there [{}], attached [{}]",
        created.join(", "),
        existed.join(", "),
        present.join(", "),
        attached.join(", ")
    );
    Ok(match missing_policies(&missing) {
        Some(gap) => format!("{note}; {gap}"),
        None => note,
    })
}

/// The users' policies: those the server has, and those it lacks.
fn policies<'m>(
    agent: &Agent,
    s3: &S3,
    m: &'m MinioInfo,
) -> anyhow::Result<(Vec<&'m str>, Vec<&'m str>)> {
    let mut policies: Vec<&str> = m.users.iter().filter_map(|u| u.policy.as_deref()).collect();
    policies.retain(|p| !p.is_empty());
    policies.sort();
    policies.dedup();
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    for p in policies {
        match wait_for(agent, s3, &format!("policy {p}"), || policy_exists(s3, p))? {
            true => present.push(p),
            false => missing.push(p),
        }
    }
    Ok((present, missing))
}

/// The warning for policies the server lacks, if any.
fn missing_policies(missing: &[&str]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let gap = format!(
        "policies [{}] not on the server and not attached: the inventory carries no \
         policy document to create them from",
        missing.join(", ")
    );
    tracing::warn!("{gap}");
    Some(gap)
}
