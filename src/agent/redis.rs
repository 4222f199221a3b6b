//! Redis Cluster membership (`redis_mode: cluster`), after the instances are up.
//!
//! - **First formation.** The node of the cluster's first instance (lowest
//!   `redis_node`) waits until every instance of the cluster answers, then runs
//!   `redis-cli --cluster create` over all of them with `redis_cluster_replicas`
//!   replicas per primary, as Pigsty's `redis.yml` does. The other nodes wait until
//!   the cluster is formed and holds their instances.
//! - **Rejoin.** An instance that comes up empty (a reimaged node: no `nodes.conf`)
//!   while the others already form the cluster takes its old place as a replica: once
//!   the cluster has failed over from the old identity at the same address (every slot
//!   served again), the old identity is forgotten on every member, and the new instance
//!   meets the cluster and replicates the primary with the fewest replicas.
//! - An instance that kept its `nodes.conf` (an A/B update with its data) is already
//!   a member; nothing is changed.
//!
//! Probes speak RESP over TCP with the agent's request timeout; every wait goes
//! through [`super::retry::Policy`].

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::Agent;
use super::retry::Attempt;
use crate::plan::node_json::{RedisInfo, RedisMember};

/// Slots of a Redis Cluster.
const SLOTS: u32 = 16384;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (a status or a bulk string); an error reply is an error.
    pub fn text(self) -> anyhow::Result<String> {
        match self {
            Reply::Simple(s) => Ok(s),
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Reply::Error(e) => bail!("{e}"),
            other => bail!("unexpected reply {other:?}"),
        }
    }
}

/// A connection to one redis instance, authenticated when a password is set.
pub struct Conn {
    addr: String,
    stream: BufReader<TcpStream>,
}

impl Conn {
    /// Connect, bounding the connect and every read and write by `timeout`.
    pub fn open(addr: &str, password: &str, timeout: Duration) -> anyhow::Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("resolving {addr}"))?
            .next()
            .with_context(|| format!("{addr} resolves to no address"))?;
        let tcp = TcpStream::connect_timeout(&sock, timeout)
            .with_context(|| format!("connecting to redis at {addr}"))?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let mut conn = Conn {
            addr: addr.to_string(),
            stream: BufReader::new(tcp),
        };
        if !password.is_empty() {
            conn.call(&["AUTH", password])?
                .text()
                .with_context(|| format!("AUTH at {addr}"))?;
        }
        Ok(conn)
    }

    /// Send one command and read its reply (an error reply is returned, not raised).
    pub fn call(&mut self, args: &[&str]) -> anyhow::Result<Reply> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        let addr = self.addr.clone();
        self.stream
            .get_mut()
            .write_all(&req)
            .with_context(|| format!("writing to redis at {addr}"))?;
        read_reply(&mut self.stream).with_context(|| format!("reading from redis at {addr}"))
    }

    /// A command whose reply is text (`CLUSTER INFO`, `CLUSTER NODES`, `OK`).
    pub fn text(&mut self, args: &[&str]) -> anyhow::Result<String> {
        let addr = self.addr.clone();
        self.call(args)?
            .text()
            .with_context(|| format!("{} at {addr}", args.join(" ")))
    }
}

fn read_line(r: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    let Some(body) = line.strip_suffix("\r\n") else {
        bail!("malformed reply line {line:?}");
    };
    Ok(body.to_string())
}

/// Read one RESP2 reply. Nesting is bounded (cluster replies nest two deep).
fn read_reply(r: &mut impl BufRead) -> anyhow::Result<Reply> {
    read_nested(r, 0)
}

fn read_nested(r: &mut impl BufRead, depth: u32) -> anyhow::Result<Reply> {
    if depth > 8 {
        bail!("reply nested too deep");
    }
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let len = || -> anyhow::Result<i64> {
        rest.parse()
            .with_context(|| format!("bad length in {line:?}"))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(len()?),
        "$" => match usize::try_from(len()?) {
            Err(_) => Reply::Bulk(None),
            Ok(n) if n > 64 << 20 => bail!("bulk reply of {n} bytes"),
            Ok(n) => {
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match usize::try_from(len()?) {
            Err(_) => Reply::Array(None),
            Ok(n) if n > 1 << 20 => bail!("array reply of {n} items"),
            Ok(n) => Reply::Array(Some(
                (0..n)
                    .map(|_| read_nested(r, depth + 1))
                    .collect::<anyhow::Result<_>>()?,
            )),
        },
        _ => bail!("unknown reply type in {line:?}"),
    })
}

/// `CLUSTER INFO`'s `key:value` lines.
pub fn info_value(info: &str, key: &str) -> Option<String> {
    info.lines().find_map(|l| {
        l.trim()
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::to_string)
    })
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterNode {
    pub id: String,
    /// `ip:port` (the bus port and host name dropped).
    pub addr: String,
    pub flags: Vec<String>,
    /// The primary's id for a replica.
    pub master: Option<String>,
    /// Number of slots served.
    pub slots: u32,
}

impl ClusterNode {
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
    pub fn is_master(&self) -> bool {
        self.has("master")
    }
    pub fn failed(&self) -> bool {
        self.has("fail") || self.has("fail?") || self.has("noaddr")
    }
}

/// Parse `CLUSTER NODES`.
pub fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1]
                .split(['@', ','])
                .next()
                .unwrap_or_default()
                .to_string();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .map(|s| match s.split_once('-') {
                    Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                        (Ok(a), Ok(b)) if b >= a => b - a + 1,
                        _ => 0,
                    },
                    None => u32::from(s.parse::<u32>().is_ok()),
                })
                .sum();
            Some(ClusterNode {
                id: f[0].to_string(),
                addr,
                flags: f[2].split(',').map(str::to_string).collect(),
                master: (f[3] != "-").then(|| f[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// What one instance says about its cluster.
#[derive(Debug, Clone)]
struct View {
    state: String,
    known: u32,
    slots_ok: u32,
    nodes: Vec<ClusterNode>,
}

fn addr(m: &RedisMember) -> String {
    format!("{}:{}", m.ip, m.port)
}

/// The state of a cluster-mode node's instances after [`join`].
pub fn join(agent: &Agent, info: &RedisInfo) -> anyhow::Result<String> {
    let me = &agent.doc.node.ip;
    let mine: Vec<&RedisMember> = info.members.iter().filter(|m| &m.ip == me).collect();
    if mine.is_empty() {
        bail!(
            "redis cluster {}: node.json lists no member on {me}",
            info.cluster
        );
    }
    let seed = info.members.first().is_some_and(|m| &m.ip == me);
    let policy = agent.opts.policy();

    // Every instance answers before anything is decided: a member that is down would
    // read as "not formed yet".
    let mut views = Vec::new();
    for m in &info.members {
        let v = policy.wait("redis", "a redis cluster member", &addr(m), || {
            match view(agent, info, m) {
                Ok(v) => Attempt::Ready(v),
                Err(e) if is_auth(&e) => Attempt::Fatal(e),
                Err(e) => Attempt::NotYet(format!("{e:#}")),
            }
        })?;
        views.push((m, v));
    }
    let formed = views.iter().any(|(m, v)| m.ip != *me && v.known > 1)
        || (seed && views.iter().any(|(_, v)| v.known > 1));
    let mut did = Vec::new();
    if !formed && seed {
        create(agent, info)?;
        did.push(format!(
            "formed over {} instances, {} replica(s) per primary",
            info.members.len(),
            info.replicas
        ));
    }
    for m in &mine {
        let (_, v) = views.iter().find(|(x, _)| x == m).expect("viewed above");
        if formed && v.known <= 1 && rejoin(agent, info, m)? {
            did.push(format!("{} rejoined as a replica", m.name));
        }
    }
    // Every instance of the cluster knows every other one, in a cluster that serves
    // every slot (gossip reaches the members one by one).
    for m in &info.members {
        policy.wait(
            "redis",
            "the redis cluster to settle",
            &addr(m),
            || match view(agent, info, m) {
                Ok(v) if settled(&v, info.members.len()) => Attempt::Ready(()),
                Ok(v) => Attempt::NotYet(format!(
                    "cluster_state {}, {} known nodes, {} of {SLOTS} slots served, {} \
                     primaries without slots",
                    v.state,
                    v.known,
                    v.slots_ok,
                    pending(&v)
                )),
                Err(e) => Attempt::NotYet(format!("{e:#}")),
            },
        )?;
    }
    let names: Vec<&str> = mine.iter().map(|m| m.name.as_str()).collect();
    if did.is_empty() {
        did.push("already members".into());
    }
    Ok(format!(
        "redis cluster {} ({}): {}",
        info.cluster,
        names.join(", "),
        did.join("; ")
    ))
}

/// An instance's view of a cluster it has fully joined: state ok, every slot served,
/// every member known, and no healthy primary without slots (a replica whose role
/// has not reached this instance yet).
fn settled(v: &View, members: usize) -> bool {
    v.state == "ok" && v.slots_ok == SLOTS && v.known as usize >= members && pending(v) == 0
}

fn pending(v: &View) -> usize {
    v.nodes
        .iter()
        .filter(|n| n.is_master() && n.slots == 0 && !n.failed())
        .count()
}

fn is_auth(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("WRONGPASS") || text.contains("NOAUTH") || text.contains("invalid password")
}

fn connect(agent: &Agent, info: &RedisInfo, m: &RedisMember) -> anyhow::Result<Conn> {
    Conn::open(&addr(m), &info.password, agent.opts.request)
}

fn view(agent: &Agent, info: &RedisInfo, m: &RedisMember) -> anyhow::Result<View> {
    let mut c = connect(agent, info, m)?;
    let text = c.text(&["CLUSTER", "INFO"])?;
    let num = |k: &str| {
        info_value(&text, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(View {
        state: info_value(&text, "cluster_state").unwrap_or_default(),
        known: num("cluster_known_nodes"),
        slots_ok: num("cluster_slots_ok"),
        nodes: parse_nodes(&c.text(&["CLUSTER", "NODES"])?),
    })
}

/// `redis-cli --cluster create`, bounded by the agent's wait (coreutils `timeout`).
fn create(agent: &Agent, info: &RedisInfo) -> anyhow::Result<()> {
    let secs = agent.opts.wait.as_secs().max(10);
    let mut cmd = Command::new("timeout");
    cmd.args([
        "--kill-after=5",
        &secs.to_string(),
        "redis-cli",
        "--cluster",
        "create",
    ]);
    cmd.args(info.members.iter().map(addr));
    cmd.args([
        "--cluster-replicas",
        &info.replicas.to_string(),
        "--cluster-yes",
    ]);
    if !info.password.is_empty() {
        cmd.env("REDISCLI_AUTH", &info.password);
    }
    tracing::info!(cluster = %info.cluster, "redis: {}", crate::sys::describe(&cmd));
    let out = crate::sys::run(&mut cmd)
        .with_context(|| format!("forming redis cluster {}", info.cluster))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.contains("[OK] All 16384 slots covered") {
        bail!(
            "redis-cli --cluster create for {} did not cover every slot:\n{}",
            info.cluster,
            crate::sys::tail(&out.stdout, 20)
        );
    }
    Ok(())
}

/// Bring an empty instance back into the cluster the other members form. False when
/// the cluster already lists this instance (met while the cluster was being formed).
fn rejoin(agent: &Agent, info: &RedisInfo, m: &RedisMember) -> anyhow::Result<bool> {
    let policy = agent.opts.policy();
    let here = addr(m);
    let mut fresh = connect(agent, info, m)?;
    let my_id = fresh.text(&["CLUSTER", "MYID"])?;

    // 1. Every member's current identity, and the table of a member in the cluster.
    let (live, anchor) = policy.wait("redis", "the redis cluster's members", &here, || {
        let mut live = Vec::new();
        let mut anchor = None;
        for p in &info.members {
            match view(agent, info, p) {
                Ok(v) => {
                    if let Some(me) = v.nodes.iter().find(|n| n.has("myself")) {
                        live.push((addr(p), me.id.clone()));
                    }
                    if p != m && v.known > 1 && anchor.is_none() {
                        anchor = Some((*p).clone());
                    }
                }
                Err(e) => return Attempt::NotYet(format!("{}: {e:#}", addr(p))),
            }
        }
        match anchor {
            Some(a) => Attempt::Ready((live, a)),
            None => Attempt::NotYet("no member is in a formed cluster".into()),
        }
    })?;
    let table = view(agent, info, &anchor)?.nodes;
    if table.iter().any(|n| n.id == my_id) {
        return Ok(false);
    }

    // 2. The identities this cluster still lists for instances that are gone: at a
    //    member's address under another id, or failed, or with no address (a node
    //    that answers under a new id at an old one's address is marked `noaddr`).
    //    Every member answered above, so none of these is a member that is down.
    let live_ids: Vec<&str> = live.iter().map(|(_, id)| id.as_str()).collect();
    let member_addrs: Vec<String> = info.members.iter().map(addr).collect();
    let is_stale = |n: &ClusterNode| {
        !live_ids.contains(&n.id.as_str()) && (n.failed() || member_addrs.contains(&n.addr))
    };
    let stale: Vec<ClusterNode> = table.iter().filter(|n| is_stale(n)).cloned().collect();

    // 3. A gone primary that still owns slots hands them to its replica. Its address
    //    answers under a new identity (or the identity failed), so it cannot come
    //    back: TAKEOVER, which needs no vote (the gone primaries may be a majority).
    for dead in stale.iter().filter(|n| n.is_master() && n.slots > 0) {
        let heir = table
            .iter()
            .filter(|n| n.master.as_deref() == Some(dead.id.as_str()))
            .find_map(|n| live.iter().find(|(_, id)| id == &n.id))
            .with_context(|| {
                format!(
                    "redis cluster {}: the gone primary {} owned {} slots and has no live \
                     replica, so its keys are lost; reassign its slots with `redis-cli \
                     --cluster fix` before this node can rejoin",
                    info.cluster, dead.id, dead.slots
                )
            })?;
        let heir_member = info
            .members
            .iter()
            .find(|p| addr(p) == heir.0)
            .expect("live ids come from members");
        policy.wait(
            "redis",
            "a replica to take over a gone primary",
            &heir.0,
            || {
                let v = match view(agent, info, heir_member) {
                    Ok(v) => v,
                    Err(e) => return Attempt::NotYet(format!("{e:#}")),
                };
                let me = v.nodes.iter().find(|n| n.has("myself"));
                if me.is_some_and(|n| n.is_master() && n.slots > 0) {
                    return Attempt::Ready(());
                }
                match connect(agent, info, heir_member)
                    .and_then(|mut c| c.call(&["CLUSTER", "FAILOVER", "TAKEOVER"]))
                {
                    Ok(Reply::Error(e)) => Attempt::NotYet(e),
                    Ok(_) => Attempt::NotYet("takeover requested".into()),
                    Err(e) => Attempt::NotYet(format!("{e:#}")),
                }
            },
        )?;
        tracing::info!(
            "redis: {} took over the slots of gone primary {}",
            heir.0,
            dead.id
        );
    }

    // 4. Forget the gone identities on every member (within redis's 60 s ban), so
    //    gossip does not bring them back. A replica cannot forget its own primary
    //    until it follows the one that took over.
    for dead in &stale {
        for p in info.members.iter().filter(|p| *p != m) {
            policy.wait(
                "redis",
                "a member to forget a gone instance",
                &addr(p),
                || match connect(agent, info, p)
                    .and_then(|mut c| c.call(&["CLUSTER", "FORGET", &dead.id]))
                {
                    Ok(Reply::Error(e)) if e.contains("Unknown node") => Attempt::Ready(()),
                    Ok(Reply::Error(e)) => Attempt::NotYet(e),
                    Ok(_) => Attempt::Ready(()),
                    Err(e) => Attempt::NotYet(format!("{e:#}")),
                },
            )?;
        }
    }

    // 5. Meet the cluster, then replicate the primary with the fewest replicas
    //    (preferring one on another host), as `redis-cli --cluster add-node
    //    --cluster-slave` picks it.
    let table = view(agent, info, &anchor)?.nodes;
    let masters: Vec<&ClusterNode> = table
        .iter()
        .filter(|n| n.is_master() && n.slots > 0 && !n.failed())
        .collect();
    let replicas_of = |id: &str| {
        table
            .iter()
            .filter(|n| n.master.as_deref() == Some(id) && !n.failed())
            .count()
    };
    let primary = masters
        .iter()
        .min_by_key(|n| {
            let same_host = n.addr.rsplit_once(':').map(|(ip, _)| ip) == Some(m.ip.as_str());
            (replicas_of(&n.id), same_host, n.addr.clone())
        })
        .with_context(|| format!("no healthy primary in the table of {}", addr(&anchor)))?;
    let target = primary.id.clone();
    fresh.text(&["CLUSTER", "MEET", &anchor.ip, &anchor.port.to_string()])?;
    policy.wait(
        "redis",
        "the new instance to replicate its primary",
        &here,
        || {
            match fresh.call(&["CLUSTER", "REPLICATE", &target]) {
                Ok(Reply::Simple(_)) => Attempt::Ready(()),
                // Until gossip has told this instance about the primary.
                Ok(Reply::Error(e)) => Attempt::NotYet(e),
                Ok(other) => Attempt::NotYet(format!("{other:?}")),
                Err(e) => Attempt::Fatal(e),
            }
        },
    )?;
    // The anchor sees the new replica before the next instance picks its primary.
    policy.wait(
        "redis",
        "the cluster to list the new replica",
        &addr(&anchor),
        || match view(agent, info, &anchor) {
            Ok(v)
                if v.nodes
                    .iter()
                    .any(|n| n.id == my_id && n.master.as_deref() == Some(target.as_str())) =>
            {
                Attempt::Ready(())
            }
            Ok(_) => Attempt::NotYet(format!("{here} not yet listed as a replica of {target}")),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        },
    )?;
    let gone: Vec<&str> = stale.iter().map(|n| n.id.as_str()).collect();
    tracing::info!(
        "redis: {} rejoined as a replica of {} ({target}), forgot {gone:?}",
        m.name,
        primary.addr
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse() {
        let mut r = BufReader::new(
            &b"+OK\r\n-ERR x\r\n:12\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n"[..],
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR x".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Int(12));
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Bulk(Some(b"abc".to_vec()))
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"a".to_vec())), Reply::Int(1)]))
        );
        assert!(read_reply(&mut r).is_err(), "end of input");
        for bad in [&b"?x\r\n"[..], b"+no-crlf", b"$x\r\n", b"$5\r\nab"] {
            assert!(read_reply(&mut BufReader::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_nodes_parse() {
        let text = "\
a1 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460
b2 10.0.0.2:6380@16380,host master - 0 1 2 connected 5461-10922 16000 [93-<-x]
c3 10.0.0.1:6381@16381 slave b2 0 1 2 connected
d4 :0@0 master,fail,noaddr - 0 1 3 disconnected
";
        let n = parse_nodes(text);
        assert_eq!(n.len(), 4);
        assert_eq!(n[0].slots, 5461);
        assert!(n[0].has("myself") && n[0].is_master());
        assert_eq!(n[1].addr, "10.0.0.2:6380");
        assert_eq!(n[1].slots, 5462 + 1);
        assert_eq!(n[2].master.as_deref(), Some("b2"));
        assert!(n[3].failed());
        let info = "# Cluster\r\ncluster_state:ok\r\ncluster_slots_ok:16384\r\n";
        assert_eq!(info_value(info, "cluster_state").as_deref(), Some("ok"));
        assert_eq!(
            info_value(info, "cluster_slots_ok").as_deref(),
            Some("16384")
        );
        assert_eq!(info_value(info, "cluster_size"), None);
    }
}
