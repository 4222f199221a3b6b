//! `pigsty rollout`: take an inventory change to every node it changes, in an order
//! that keeps quorum, a primary and every committed row (docs/updates.md).
//!
//! 1. **What runs.** Each node's agent reports its plan digest to etcd; a node whose
//!    digest is not the inventory's changes. Nodes not reporting yet are new (booted
//!    from their image, not rolled out); reports the inventory lacks are gone (left
//!    running).
//! 2. **What changes.** Each changed node's bundle is built (`build-image --format
//!    bundle`: one shared root per package set) and served by the artifact server;
//!    each node is asked over SSH what the bundle changes against the one it runs
//!    (`agent apply --check`): the node's own bundle is the truth, whatever inventory
//!    built it. That gives each node its weight (database, config, image) and the
//!    fleet its order ([`crate::diff::order`], with each cluster's live leader as
//!    its primary).
//! 3. **The steps**, one lane at a time (`--parallel N`: up to N PostgreSQL clusters
//!    or other nodes side by side; etcd and MinIO members always one at a time):
//!    `agent apply` (database, config: no reboot) or `agent update --reboot`
//!    (image), then a bounded wait until the node reports the new digest with its
//!    join done and its clusters are whole (etcd: every member healthy; Patroni: a
//!    leader running and every replica streaming with lag under the bound; MinIO:
//!    `/minio/health/cluster`). A primary whose change stops PostgreSQL is first
//!    switched over through Patroni's REST API to an updated replica.
//! 4. **Stop and resume.** The first step that fails stops the rollout, naming the
//!    node, the step and why; the next `rollout` starts again from step 1, where the
//!    nodes done report their new digest.

pub mod ssh;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::agent::etcd::Access;
use crate::agent::state::State;
use crate::compile::Compiled;
use crate::diff::{FileDiff, NodeDiff, Status, Step, StepKind, Weight};
use crate::model::{Fleet, Node, PgRole};

/// How a rollout runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    /// Lanes run side by side (PostgreSQL clusters, other nodes).
    pub parallel: usize,
    /// The operator's SSH private key.
    pub identity: PathBuf,
    pub ssh_port: u16,
    /// Where the artifact server listens (port 0: any); its address towards each
    /// node is the one nodes fetch from.
    pub listen: std::net::SocketAddr,
    /// Where bundles and roots are built.
    pub out: PathBuf,
    pub cache: PathBuf,
    pub offline: bool,
    pub extra_trees: Vec<PathBuf>,
    /// A replica is back when it streams with at most this lag.
    pub lag_bytes: u64,
    /// Bound of each node's step and of each wait after it.
    pub node_timeout: Duration,
    /// How often waits look again.
    pub poll: Duration,
}

/// How long each member's HAProxy waits for the new primary of a switchover to
/// answer as one (`agent haproxy-check --until-primary`); a member whose wait ends
/// without it is checked again once the switchover is done. A switchover that
/// fails stops these waits ([`follow_command`], [`stop_follow_command`]).
const FOLLOW_WITHIN: Duration = Duration::from_secs(120);

/// What each HAProxy member runs to follow a switchover to `to`.
fn follow_command(to: &str) -> String {
    format!(
        "sudo -n pigsty agent haproxy-check --until-primary {to} --within {}",
        FOLLOW_WITHIN.as_secs()
    )
}

/// What stops [`follow_command`]`(to)` on a member: `pkill` by its command line,
/// spelled so that the pattern does not match the pkill (or sudo) that carries it
/// (`primar[y]` matches `primary`, not itself). Instance names are letters, digits
/// and dashes (the inventory checks them), nothing a regex or a shell reads.
fn stop_follow_command(to: &str) -> String {
    format!("sudo -n pkill -f -- 'agent haproxy-check --until-primar[y] {to} --within'")
}

/// How the admin reaches the fleet's etcd (and, with TLS, its Patroni and MinIO).
#[derive(Debug, Clone)]
pub struct Reach {
    pub endpoints: Vec<String>,
    pub access: Access,
}

/// One step done (or skipped), for the final table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub node: String,
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
    pub old_digest: String,
    pub new_digest: String,
    pub secs: f64,
    /// How long its cluster had no primary (a switchover, or a one-node cluster
    /// restarted in place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_secs: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Where a rollout stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    pub node: String,
    pub step: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// The plan, in order.
    pub plan: Vec<Step>,
    pub nodes: Vec<NodeDiff>,
    pub rows: Vec<Row>,
    /// Nodes the rollout leaves alone, and why (new, gone).
    pub left: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
}

/// What `agent apply --check` prints (the subset read here).
#[derive(Debug, Clone, Deserialize)]
struct Checked {
    files: Vec<FileDiff>,
    #[serde(default)]
    needs_boot: bool,
    #[serde(default)]
    actions: Vec<String>,
}

/// A changed node and what it gets.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    ip: IpAddr,
    user: String,
    host_keys: Vec<String>,
    old_digest: String,
    new_digest: String,
    bundle_sha: String,
    bundle_url: String,
    root_sha: String,
    /// Set when the node runs another root: it fetches this one.
    root_url: Option<String>,
    weight: Weight,
}

/// Progress lines go to stderr, one per node and step.
fn say(line: &str) {
    eprintln!("{line}");
}

/// Run the rollout of `fleet` (compiled as `compiled`, in the same order).
pub fn rollout(
    fleet: &Fleet,
    compiled: &[Compiled],
    reach: &Reach,
    opts: &Options,
) -> anyhow::Result<Report> {
    // 1. What runs.
    let reported =
        crate::agent::read_fleet(&reach.endpoints, Duration::from_secs(5), &reach.access)
            .context("reading what the nodes run from etcd")?;
    let mut left = Vec::new();
    let mut changed: Vec<(&Node, &Compiled, &State)> = Vec::new();
    for (node, c) in fleet.nodes.iter().zip(compiled) {
        match reported.get(&node.nodename) {
            Some(s) if s.plan_digest.is_empty() => left.push(format!(
                "{}: reports no plan digest (an image older than digest reports): \
                 give it its new image by hand once (pigsty agent update)",
                node.nodename
            )),
            Some(s) if s.plan_digest == c.plan.digest => {}
            Some(s) => changed.push((node, c, s)),
            None => left.push(format!(
                "{}: new (no report in etcd): build its image and boot it \
                 (pigsty build-image --role {})",
                node.nodename, node.nodename
            )),
        }
    }
    for name in reported.keys() {
        if !fleet.nodes.iter().any(|n| &n.nodename == name) {
            left.push(format!(
                "{name}: not in the inventory: left running, retire it by hand"
            ));
        }
    }
    for l in &left {
        say(&format!("skip {l}"));
    }
    if changed.is_empty() {
        say("every node runs what the inventory says: nothing to roll out");
        return Ok(Report {
            dry_run: opts.dry_run,
            plan: Vec::new(),
            nodes: Vec::new(),
            rows: Vec::new(),
            left,
            stopped: None,
        });
    }

    // 2. Bundles, served; each node says what its bundle changes.
    say(&format!(
        "build: bundles of {} node(s) into {}",
        changed.len(),
        opts.out.display()
    ));
    let pairs: Vec<(&Node, Compiled)> =
        changed.iter().map(|(n, c, _)| (*n, (*c).clone())).collect();
    let build = crate::image::BuildOptions {
        formats: vec![crate::image::Format::Bundle],
        out: opts.out.clone(),
        cache: opts.cache.clone(),
        offline: opts.offline,
        epoch: crate::image::default_epoch(),
        extra_trees: opts.extra_trees.clone(),
    };
    let manifests = crate::image::build(fleet, &pairs, &build)?;
    let mut artifacts = crate::serve::Artifacts::default();
    let mut staged = Vec::new();
    for ((node, c, state), m) in changed.iter().zip(&manifests) {
        let bundle = opts.out.join(&node.nodename).join("bundle.tar");
        // The build hashed it already: its manifest names the sha256.
        let sha = m
            .artifacts
            .iter()
            .find(|a| a.name == "bundle.tar")
            .map(|a| a.sha256.clone())
            .with_context(|| format!("{}: the build wrote no bundle.tar", node.nodename))?;
        artifacts.add(&sha, &bundle, Some(vec![IpAddr::V4(node.ip)]));
        let root = m
            .root
            .as_ref()
            .with_context(|| format!("{}: the build named no shared root", node.nodename))?;
        artifacts.add(&root.sha256, &opts.out.join(&root.path), None);
        staged.push((*node, *c, *state, sha, root.sha256.clone()));
    }
    let server = crate::serve::Server::start(opts.listen, artifacts)?;
    let mut targets = Vec::new();
    let mut diffs = Vec::new();
    for (node, c, state, sha, root_sha) in staged {
        let here = crate::serve::source_address_towards(IpAddr::V4(node.ip))?;
        let running_root = state
            .slots
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .map(|r| r.root.clone())
            .unwrap_or_default();
        let mut t = Target {
            name: node.nodename.clone(),
            ip: IpAddr::V4(node.ip),
            user: admin_user(node)?,
            host_keys: state.host_keys.clone(),
            old_digest: state.plan_digest.clone(),
            new_digest: c.plan.digest.clone(),
            bundle_url: server.url(here, &sha),
            bundle_sha: sha,
            root_url: (running_root != root_sha).then(|| server.url(here, &root_sha)),
            root_sha,
            weight: Weight::Image,
        };
        say(&format!("{}: check what its new bundle changes", t.name));
        let checked = check(&t, opts)?;
        let mut reasons = Vec::new();
        if t.root_url.is_some() {
            reasons.push(format!(
                "its root differs ({} → {})",
                short(&running_root),
                short(&t.root_sha)
            ));
        }
        if checked.needs_boot {
            reasons.extend(checked.actions.iter().cloned());
        }
        let (weight, reason, actions) = crate::diff::weigh(&checked.files, reasons);
        t.weight = weight;
        say(&format!("{}: {} ({reason})", t.name, weight.as_str()));
        diffs.push(NodeDiff {
            nodename: t.name.clone(),
            ip: t.ip.to_string(),
            status: Status::Changed,
            weight: Some(weight),
            reason,
            old_digest: Some(t.old_digest.clone()),
            new_digest: Some(t.new_digest.clone()),
            packages_added: Vec::new(),
            packages_removed: Vec::new(),
            files: checked.files,
            actions,
        });
        targets.push(t);
    }

    // The order, with each cluster's live leader as its primary.
    let live = live_fleet(fleet, reach);
    let sides = crate::diff::sides(&live, compiled);
    let plan = crate::diff::order(&diffs, &sides);
    for s in &plan {
        say(&format!("plan {}: {}", s.node, s.what));
    }
    let mut report = Report {
        dry_run: opts.dry_run,
        plan: plan.clone(),
        nodes: diffs,
        rows: Vec::new(),
        left,
        stopped: None,
    };
    if opts.dry_run {
        return Ok(report);
    }

    // 3. Preflight: the clusters it touches are whole before anything changes.
    let ctx = Ctx {
        server: &server,
        fleet: &live,
        reach,
        opts,
        targets: targets.iter().map(|t| (t.name.clone(), t)).collect(),
        rows: Mutex::new(Vec::new()),
        stopped: Mutex::new(None),
        halt: AtomicBool::new(false),
    };
    for t in &targets {
        let node = ctx.node(&t.name)?;
        if let Err(e) = ctx.whole(node, Duration::from_secs(120)) {
            report.stopped = Some(Stopped {
                node: t.name.clone(),
                step: "preflight".into(),
                why: format!("{e:#}"),
            });
            return Ok(report);
        }
    }

    // 4. The steps, phase by phase; lanes of a phase side by side.
    for (phase, lanes) in phases(&plan) {
        let width = if phase == 1 { 1 } else { opts.parallel.max(1) };
        let queue = Mutex::new(lanes.into_iter());
        std::thread::scope(|scope| {
            for _ in 0..width {
                scope.spawn(|| {
                    loop {
                        if ctx.halt.load(Ordering::SeqCst) {
                            return;
                        }
                        let Some(lane) = queue.lock().ok().and_then(|mut q| q.next()) else {
                            return;
                        };
                        ctx.run_lane(&lane);
                    }
                });
            }
        });
        if ctx.halt.load(Ordering::SeqCst) {
            break;
        }
    }
    // 5. Parameters that wait for a restart (Patroni's pending_restart), cluster by
    //    cluster: what the inventory says must be what runs.
    if !ctx.halt.load(Ordering::SeqCst) {
        let clusters: BTreeSet<String> = plan
            .iter()
            .filter_map(|s| ctx.node(&s.node).ok())
            .filter_map(|n| n.pg.as_ref().map(|p| p.cluster.clone()))
            .collect();
        for cluster in clusters {
            if let Err(e) = ctx.restart_pending(&cluster) {
                let why = format!("{e:#}");
                say(&format!(
                    "{cluster}: restart of pending parameters FAILED: {why}"
                ));
                if let Ok(mut s) = ctx.stopped.lock() {
                    *s = Some(Stopped {
                        node: cluster.clone(),
                        step: "restart (pending parameters)".into(),
                        why,
                    });
                }
                break;
            }
        }
    }
    report.rows = ctx.rows.into_inner().unwrap_or_default();
    report.stopped = ctx.stopped.into_inner().unwrap_or_default();
    // The artifact server stops here, with the rollout.
    drop(server);
    Ok(report)
}

/// The plan's steps by phase, each phase's by lane, in order: a lane's steps run one
/// after another, a phase's lanes may run side by side, phases one after another.
fn phases(plan: &[Step]) -> BTreeMap<u8, Vec<Vec<&Step>>> {
    let mut phases: BTreeMap<u8, Vec<Vec<&Step>>> = BTreeMap::new();
    for step in plan {
        let lanes = phases.entry(step.phase()).or_default();
        match lanes.iter_mut().find(|l| l[0].lane == step.lane) {
            Some(lane) => lane.push(step),
            None => lanes.push(vec![step]),
        }
    }
    phases
}

fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

fn admin_user(node: &Node) -> anyhow::Result<String> {
    if !node.node.node_admin_enabled.0 {
        bail!(
            "{}: node_admin_enabled is false: no admin user to reach it by",
            node.nodename
        );
    }
    Ok(node.node.node_admin_username.clone())
}

fn connect(t: &Target, opts: &Options) -> anyhow::Result<ssh::Session> {
    ssh::Session::connect(
        &std::net::SocketAddr::new(t.ip, opts.ssh_port).to_string(),
        &t.user,
        &opts.identity,
        &t.host_keys,
        ssh::Timeouts {
            connect: Duration::from_secs(20),
            command: opts.node_timeout,
            silence: Duration::from_secs(60),
        },
    )
    .with_context(|| format!("{}: connecting over SSH", t.name))
}

/// Ask the node what its new bundle changes (`agent apply --check`).
fn check(t: &Target, opts: &Options) -> anyhow::Result<Checked> {
    let session = connect(t, opts)?;
    let out = session.run(
        &format!(
            "sudo -n pigsty agent apply --check --json --bundle {} --bundle-sha256 {}",
            t.bundle_url, t.bundle_sha
        ),
        None,
        &mut |_| {},
    )?;
    if !out.success() {
        bail!(
            "{}: agent apply --check failed ({:?}): {}",
            t.name,
            out.status,
            last_lines(&out.stderr_text(), 5)
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: reading what agent apply --check printed", t.name))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The fleet with each PostgreSQL cluster's live leader (Patroni's `/cluster`) as
/// its primary and the inventory's primary, when it no longer leads, as a replica.
fn live_fleet(fleet: &Fleet, reach: &Reach) -> Fleet {
    let mut live = fleet.clone();
    let clusters: std::collections::BTreeSet<String> = fleet
        .nodes
        .iter()
        .filter_map(|n| n.pg.as_ref().map(|p| p.cluster.clone()))
        .collect();
    for cluster in clusters {
        let members = fleet.pg_members(&cluster);
        let Some(state) = members.iter().find_map(|n| patroni_cluster(n, reach).ok()) else {
            continue;
        };
        let Some(leader) = state.members.iter().find(|m| m.role == "leader") else {
            continue;
        };
        for n in &mut live.nodes {
            if let Some(pg) = &mut n.pg
                && pg.cluster == cluster
            {
                if pg.name == leader.name {
                    pg.role = PgRole::Primary;
                } else if pg.role == PgRole::Primary {
                    pg.role = PgRole::Replica;
                }
            }
        }
    }
    live
}

/// Patroni's `/cluster`.
#[derive(Debug, Clone, Deserialize)]
struct PatroniCluster {
    #[serde(default)]
    members: Vec<PatroniMember>,
}

#[derive(Debug, Clone, Deserialize)]
struct PatroniMember {
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    lag: serde_json::Value,
    /// A parameter changed that PostgreSQL takes only at a restart.
    #[serde(default)]
    pending_restart: bool,
}

/// Which members of a cluster to restart now, in order, for the parameters Patroni
/// marks pending: the replicas first (no downtime); the leader only once no replica
/// waits (it restarts in place, with downtime). A replica runs a parameter such as
/// max_connections at least at its primary's value, so a lowered one reaches the
/// replicas only after the leader restarted: the caller asks again after each pass.
fn pending_restarts(state: &PatroniCluster) -> (Vec<String>, Option<String>) {
    let is_leader = |m: &PatroniMember| m.role == "leader" || m.role == "standby_leader";
    let replicas: Vec<String> = state
        .members
        .iter()
        .filter(|m| m.pending_restart && !is_leader(m))
        .map(|m| m.name.clone())
        .collect();
    let leader = state
        .members
        .iter()
        .find(|m| m.pending_restart && is_leader(m))
        .map(|m| m.name.clone());
    if replicas.is_empty() {
        (replicas, leader)
    } else {
        (replicas, None)
    }
}

/// A client of Patroni's REST APIs: the operator's certificate when the fleet has a
/// CA; a whole request gives up after `request`.
fn patroni_client(reach: &Reach, request: Duration) -> anyhow::Result<crate::http::Client> {
    let connect = Duration::from_secs(3);
    match &reach.access.tls {
        Some(tls) => crate::http::client_tls(connect, request, tls),
        None => crate::http::client(connect, request),
    }
}

fn patroni_cluster(node: &Node, reach: &Reach) -> anyhow::Result<PatroniCluster> {
    let base = node.patroni_url().context("not a PostgreSQL node")?;
    let url = format!("{base}/cluster");
    let (code, body) = crate::http::get(&patroni_client(reach, Duration::from_secs(10))?, &url)?;
    if code != 200 {
        bail!("GET {url}: HTTP {code}");
    }
    serde_json::from_str(&body).with_context(|| format!("reading {url}"))
}

struct Ctx<'a> {
    server: &'a crate::serve::Server,
    fleet: &'a Fleet,
    reach: &'a Reach,
    opts: &'a Options,
    targets: BTreeMap<String, &'a Target>,
    rows: Mutex<Vec<Row>>,
    stopped: Mutex<Option<Stopped>>,
    halt: AtomicBool,
}

impl Ctx<'_> {
    fn node(&self, name: &str) -> anyhow::Result<&Node> {
        self.fleet
            .nodes
            .iter()
            .find(|n| n.nodename == name)
            .with_context(|| format!("the inventory has no node {name}"))
    }

    fn run_lane(&self, lane: &[&Step]) {
        for step in lane {
            if self.halt.load(Ordering::SeqCst) {
                return;
            }
            let start = Instant::now();
            let label = step_label(step);
            say(&format!("{}: {label} …", step.node));
            match self.run_step(step) {
                Ok(mut row) => {
                    row.secs = start.elapsed().as_secs_f64();
                    say(&format!(
                        "{}: {label} done in {:.1}s{}",
                        step.node,
                        row.secs,
                        row.downtime_secs
                            .map(|d| format!(" (no primary for {d:.1}s)"))
                            .unwrap_or_default()
                    ));
                    if let Ok(mut rows) = self.rows.lock() {
                        rows.push(row);
                    }
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    say(&format!("{}: {label} FAILED: {why}", step.node));
                    self.halt.store(true, Ordering::SeqCst);
                    if let Ok(mut s) = self.stopped.lock()
                        && s.is_none()
                    {
                        *s = Some(Stopped {
                            node: step.node.clone(),
                            step: label,
                            why,
                        });
                    }
                    return;
                }
            }
        }
    }

    fn row(&self, step: &Step) -> Row {
        let t = self.targets.get(&step.node);
        Row {
            node: step.node.clone(),
            step: step_label(step),
            weight: match &step.kind {
                StepKind::Update { weight } => Some(*weight),
                _ => None,
            },
            old_digest: t.map(|t| short(&t.old_digest)).unwrap_or_default(),
            new_digest: t.map(|t| short(&t.new_digest)).unwrap_or_default(),
            secs: 0.0,
            downtime_secs: None,
            note: String::new(),
        }
    }

    fn run_step(&self, step: &Step) -> anyhow::Result<Row> {
        let mut row = self.row(step);
        match &step.kind {
            StepKind::Update { .. } => {
                let t = self
                    .targets
                    .get(&step.node)
                    .with_context(|| format!("{} has no new bundle", step.node))?;
                let node = self.node(&step.node)?;
                // A one-node cluster restarted in place: timed until it leads again.
                let alone = node
                    .pg
                    .as_ref()
                    .is_some_and(|p| self.fleet.pg_members(&p.cluster).len() == 1)
                    && t.weight != Weight::Database;
                let start = Instant::now();
                if t.weight != Weight::Database
                    && let Some(e) = &node.etcd
                {
                    // Best effort: without it the restart is an election, not a loss.
                    if let Err(err) = self.hand_over_etcd(node, &e.cluster) {
                        say(&format!(
                            "{}: etcd leadership not moved ({}); its restart will be an election",
                            node.nodename,
                            first_line(&err)
                        ));
                    }
                }
                self.update(t)?;
                self.wait_reported(t)?;
                self.whole(node, self.opts.node_timeout)?;
                if alone {
                    row.downtime_secs = Some(start.elapsed().as_secs_f64());
                    row.note = "one-node cluster: restarted in place".into();
                }
            }
            StepKind::Switchover { cluster, to } => {
                row.downtime_secs = Some(self.switchover(&step.node, cluster, to)?);
            }
            StepKind::ClusterConfig { cluster } => {
                row.note = format!(
                    "{cluster}'s Patroni configuration is replaced by its first member's apply"
                );
            }
            StepKind::InPlace { cluster } => {
                row.note = format!("{cluster} is down while its only member restarts");
            }
            StepKind::Provision | StepKind::Retire => {
                row.note = "left to the operator".into();
            }
        }
        Ok(row)
    }

    /// `agent apply` or `agent update --reboot` on the node.
    fn update(&self, t: &Target) -> anyhow::Result<()> {
        let session = connect(t, self.opts)?;
        let command = match t.weight {
            Weight::Database | Weight::Config => format!(
                "sudo -n pigsty agent apply --json --bundle {} --bundle-sha256 {} --timeout {}",
                t.bundle_url,
                t.bundle_sha,
                self.opts.node_timeout.as_secs()
            ),
            Weight::Image => {
                let mut c = format!(
                    "sudo -n pigsty agent update --bundle {} --bundle-sha256 {} --reboot",
                    t.bundle_url, t.bundle_sha
                );
                if let Some(url) = &t.root_url {
                    c.push_str(&format!(" --root {url} --root-sha256 {}", t.root_sha));
                }
                c
            }
        };
        let name = t.name.clone();
        // What the node fetches, as the artifact server sends it: a bar on a terminal.
        let mut fetched = vec![t.bundle_sha.clone()];
        if t.weight == Weight::Image && t.root_url.is_some() {
            fetched.push(t.root_sha.clone());
        }
        let sent = || -> (u64, u64) {
            fetched.iter().fold((0, 0), |(a, b), sha| {
                let (x, y) = self.server.served(sha);
                (a + x, b + y)
            })
        };
        let (before, total) = sent();
        let running = AtomicBool::new(true);
        let out = std::thread::scope(|scope| {
            scope.spawn(|| {
                let bar =
                    indicatif::ProgressBar::new(total).with_message(format!("{name}: fetching"));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                // Bounded by the command's own bound: it ends when the command does.
                while running.load(Ordering::SeqCst) {
                    bar.set_position(sent().0.saturating_sub(before).min(total));
                    std::thread::sleep(Duration::from_millis(200));
                }
                bar.finish_and_clear();
            });
            let out = session.run(&command, None, &mut |chunk| {
                for line in String::from_utf8_lossy(chunk).lines() {
                    tracing::debug!("{name}: {line}");
                }
            });
            running.store(false, Ordering::SeqCst);
            out
        })?;
        let got = sent().0.saturating_sub(before);
        if got > 0 {
            say(&format!(
                "{name}: fetched {:.1} MiB from the artifact server",
                got as f64 / 1048576.0
            ));
        }
        // A reboot may cut the session before the exit status comes.
        let rebooting = t.weight == Weight::Image
            && (out.status.is_none() || out.stdout_text().contains("rebooting"));
        if !(out.success() || rebooting) {
            bail!(
                "`{}` exited {:?}: {}",
                command.split(" --").next().unwrap_or(&command),
                out.status,
                last_lines(&out.stderr_text(), 6)
            );
        }
        Ok(())
    }

    /// Until the node reports the new plan digest with its join done (after an A/B
    /// update: booted from the new slot, and kept it).
    fn wait_reported(&self, t: &Target) -> anyhow::Result<()> {
        let what = format!("report plan {} with its join done", short(&t.new_digest));
        self.bounded(&t.name, &what, self.opts.node_timeout, || {
            let fleet = crate::agent::read_fleet(
                &self.reach.endpoints,
                Duration::from_secs(5),
                &self.reach.access,
            )
            .map_err(|e| format!("{e:#}"))?;
            let s = fleet.get(&t.name).ok_or("no report")?;
            if s.plan_digest != t.new_digest {
                return Err(format!("reports plan {}", short(&s.plan_digest)));
            }
            if !s.done {
                return Err(format!("join at {}", s.current));
            }
            if t.weight == Weight::Image {
                let r = s.slots.as_ref().and_then(|s| s.running.clone());
                match r {
                    Some(r) if r.bundle == t.bundle_sha && r.state == "blessed" => {}
                    Some(r) => return Err(format!("slot {} is {}", r.slot, r.state)),
                    None => return Err("no slots reported".into()),
                }
            }
            Ok(())
        })
    }

    /// Until every cluster the node serves is whole.
    fn whole(&self, node: &Node, limit: Duration) -> anyhow::Result<()> {
        if let Some(e) = &node.etcd {
            self.bounded(
                &node.nodename,
                &format!("etcd cluster {} healthy on every member", e.cluster),
                limit,
                || self.etcd_whole(&e.cluster),
            )?;
        }
        if let Some(pg) = &node.pg {
            self.bounded(
                &node.nodename,
                &format!(
                    "{} with a running leader and every replica streaming (lag ≤ {} bytes)",
                    pg.cluster, self.opts.lag_bytes
                ),
                limit,
                || self.pg_whole(&pg.cluster),
            )?;
        }
        if let Some(m) = &node.minio {
            self.bounded(
                &node.nodename,
                &format!("MinIO {} to answer /minio/health/cluster", m.cluster),
                limit,
                || self.minio_whole(node),
            )?;
        }
        Ok(())
    }

    fn etcd_whole(&self, cluster: &str) -> Result<(), String> {
        let members = self.fleet.etcd_members(cluster);
        let mut bad = Vec::new();
        for m in &members {
            let (Some(e), Some(url)) = (&m.etcd, self.reach.access.url_of(m)) else {
                continue;
            };
            match crate::agent::etcd::Client::with(&url, Duration::from_secs(3), &self.reach.access)
                .and_then(|c| c.health())
            {
                Ok(true) => {}
                Ok(false) => bad.push(format!("{} unhealthy", e.name)),
                Err(err) => bad.push(format!("{}: {}", e.name, first_line(&err))),
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    }

    fn pg_whole(&self, cluster: &str) -> Result<(), String> {
        let members = self.fleet.pg_members(cluster);
        let mut last = String::from("no member answered");
        for n in &members {
            let state = match patroni_cluster(n, self.reach) {
                Ok(s) => s,
                Err(e) => {
                    last = first_line(&e);
                    continue;
                }
            };
            return pg_verdict(&state, members.len(), self.opts.lag_bytes);
        }
        Err(last)
    }

    fn minio_whole(&self, node: &Node) -> Result<(), String> {
        let m = node.minio.as_ref().ok_or("not a MinIO member")?;
        let scheme = if node.minio_https() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}:{}/minio/health/cluster",
            node.ip, m.params.minio_port
        );
        let client = match &self.reach.access.tls {
            Some(tls) => crate::http::client_trusting(
                Duration::from_secs(3),
                Duration::from_secs(10),
                &tls.ca,
            ),
            None => crate::http::client(Duration::from_secs(3), Duration::from_secs(10)),
        }
        .map_err(|e| format!("{e:#}"))?;
        match crate::http::get(&client, &url) {
            Ok((200, _)) => Ok(()),
            Ok((code, _)) => Err(format!("HTTP {code}")),
            Err(e) => Err(first_line(&e)),
        }
    }

    /// When the node's etcd member leads Raft, hand leadership to another member first,
    /// so its restart is not an election (a few seconds in which etcd answers nothing
    /// and Patroni's leader key cannot be renewed).
    fn hand_over_etcd(&self, node: &Node, cluster: &str) -> anyhow::Result<()> {
        let client = |n: &Node| {
            self.reach.access.url_of(n).and_then(|u| {
                crate::agent::etcd::Client::with(&u, Duration::from_secs(5), &self.reach.access)
                    .ok()
            })
        };
        let Some(mine) = client(node) else {
            return Ok(());
        };
        let (me, leader) = mine
            .status()
            .context("etcd status of the member to update")?;
        if me != leader {
            return Ok(());
        }
        // Another member that answers and sees the same leader.
        let target = self
            .fleet
            .etcd_members(cluster)
            .into_iter()
            .filter(|n| n.ip != node.ip)
            .find_map(|n| {
                let (id, l) = client(n)?.status().ok()?;
                (l == leader).then_some((id, n.nodename.clone()))
            });
        let Some((target, to)) = target else {
            say(&format!(
                "{}: its etcd member leads Raft and no other member answers: its restart \
                 will be an election",
                node.nodename
            ));
            return Ok(());
        };
        say(&format!(
            "{}: its etcd member leads Raft: leadership goes to {to}'s first",
            node.nodename
        ));
        mine.move_leader(target)
            .context("moving etcd's Raft leadership")?;
        self.bounded(
            &node.nodename,
            &format!("{to}'s etcd member to lead Raft"),
            Duration::from_secs(60),
            || match mine.status() {
                Ok((_, l)) if l == target => Ok(()),
                Ok((_, l)) => Err(format!("leader is {l:x}")),
                Err(e) => Err(first_line(&e)),
            },
        )
    }

    /// Hand the cluster's primary over to `to` through Patroni's REST API and wait
    /// until `to` leads and runs; returns how long the cluster had no running leader.
    fn switchover(&self, leader: &str, cluster: &str, to: &str) -> anyhow::Result<f64> {
        let node = self.node(leader)?;
        // The live leader (it may not be the inventory's primary).
        let state = patroni_cluster(node, self.reach)?;
        let current = state
            .members
            .iter()
            .find(|m| m.role == "leader")
            .map(|m| m.name.clone())
            .with_context(|| format!("{cluster} has no leader to switch over from"))?;
        if current == to {
            return Ok(0.0);
        }
        // A checkpoint first, so the one the old primary makes as it shuts down (with
        // no primary meanwhile) has little left to write. Best effort.
        if let Some(t) = self.targets.get(leader) {
            let done = connect(t, self.opts).and_then(|s| {
                s.run(
                    "sudo -n -u postgres psql -X -q -c CHECKPOINT",
                    None,
                    &mut |_| {},
                )
            });
            match done {
                Ok(o) if o.success() => {}
                Ok(o) => tracing::warn!(
                    "{leader}: CHECKPOINT before the switchover: {}",
                    o.stderr_text()
                ),
                Err(e) => tracing::warn!("{leader}: CHECKPOINT before the switchover: {e:#}"),
            }
        }
        let target = self.node_by_instance(cluster, to)?;
        let start = Instant::now();
        // Every member's HAProxy waits for `to` to answer as primary, from before the
        // switchover: each routes to it as soon as it leads, where a check started
        // from here afterwards waited for the SSH logins first (5 s under TCG) and
        // HAProxy's own checks take up to `inter` and `rise` more.
        let follow = follow_command(to);
        let (moved, unrouted) = std::thread::scope(|scope| {
            let followers = scope.spawn(|| self.on_haproxy_members(cluster, &follow));
            let moved = self.switch_to(node, leader, target, cluster, &current, to);
            if !matches!(&moved, Ok((_, leads)) if leads == to) {
                // A failed switchover, or one that promoted another member, is dealt
                // with now, not when the followers' waits for `to` run out
                // (FOLLOW_WITHIN).
                let _ = self.on_haproxy_members(cluster, &stop_follow_command(to));
            }
            (moved, followers.join().unwrap_or(vec!["panicked".into()]))
        });
        let (secs, leads) = moved?;
        if leads != to {
            say(&format!(
                "{cluster}: Patroni promoted {leads}, not {to} (the other members take the \
                 leader key when the candidate does not answer them in time); {leads} runs \
                 the update too"
            ));
            self.haproxy_check(cluster);
            return Ok(secs);
        }
        if unrouted.is_empty() {
            say(&format!(
                "{cluster}: every member's HAProxy routed to {to} as soon as it answered as \
                 primary ({:.1}s after the switchover began)",
                start.elapsed().as_secs_f64()
            ));
        } else {
            say(&format!(
                "{cluster}: HAProxy did not follow {to} at once on {}",
                unrouted.join("; ")
            ));
            self.haproxy_check(cluster);
        }
        Ok(secs)
    }

    /// The switchover itself: Patroni's REST API asked, then `to` waited for until it
    /// leads and runs; returns how long that took.
    fn switch_to(
        &self,
        node: &Node,
        leader: &str,
        target: &Node,
        cluster: &str,
        current: &str,
        to: &str,
    ) -> anyhow::Result<(f64, String)> {
        let start = Instant::now();
        let (code, text) = self.patroni_post_answer(
            node,
            "switchover",
            &serde_json::json!({"leader": current, "candidate": to}),
            Duration::from_secs(60),
        )?;
        if switchover_answer(code, &text)? {
            say(&format!(
                "{leader}: Patroni stopped watching the switchover to {to} before it ended \
                 ({}): waiting for {to} (or another updated member) to lead",
                text.trim()
            ));
        }
        // Patroni may promote another member than the candidate: the other replicas
        // take the released leader key themselves when the candidate does not answer
        // them in time (an overloaded node). Every replica is updated before the
        // switchover, so any member but the former leader leading is the switchover
        // done; who leads is said.
        let mut leads = String::new();
        self.bounded(
            leader,
            &format!("{to} (or another updated member) to lead {cluster} and run"),
            self.opts.node_timeout,
            || {
                let s = patroni_cluster(target, self.reach)
                    .or_else(|_| patroni_cluster(node, self.reach))
                    .map_err(|e| first_line(&e))?;
                let running = s
                    .members
                    .iter()
                    .find(|m| m.role == "leader" && m.state == "running");
                match running {
                    Some(m) if m.name != current => {
                        leads = m.name.clone();
                        Ok(())
                    }
                    _ => match s.members.iter().find(|m| m.name == to) {
                        Some(m) => Err(format!("{to} is {} ({})", m.role, m.state)),
                        None => Err(format!("{to} is not listed")),
                    },
                }
            },
        )?;
        Ok((start.elapsed().as_secs_f64(), leads))
    }

    /// Right after the primary of `cluster` moved: every member's HAProxy runs its
    /// health checks now and routes by them at once (`pigsty agent haproxy-check`),
    /// instead of after its own `rise` checks. Best effort, all members at once: a
    /// member that cannot is left to its own checks, which reach the same answer.
    fn haproxy_check(&self, cluster: &str) {
        let start = Instant::now();
        let failed = self.on_haproxy_members(cluster, "sudo -n pigsty agent haproxy-check");
        if failed.is_empty() {
            say(&format!(
                "{cluster}: every member's HAProxy checked its servers at once ({:.1}s)",
                start.elapsed().as_secs_f64()
            ));
        } else {
            say(&format!(
                "{cluster}: HAProxy left to its own checks on {}",
                failed.join("; ")
            ));
        }
    }

    /// `command` on every member of `cluster` that runs HAProxy, all at once; the
    /// members where it failed, each with why.
    fn on_haproxy_members(&self, cluster: &str, command: &str) -> Vec<String> {
        let members: Vec<&Target> = self
            .fleet
            .pg_members(cluster)
            .into_iter()
            .filter(|n| n.haproxy())
            .filter_map(|n| self.targets.get(&n.nodename).copied())
            .collect();
        std::thread::scope(|scope| {
            let runs: Vec<_> = members
                .iter()
                .map(|t| {
                    scope.spawn(move || {
                        connect(t, self.opts)
                            .and_then(|s| s.run(command, None, &mut |_| {}))
                            .and_then(|o| {
                                if o.success() {
                                    Ok(())
                                } else {
                                    Err(anyhow::anyhow!("{}", o.stderr_text()))
                                }
                            })
                            .map_err(|e| format!("{}: {}", t.name, first_line(&e)))
                    })
                })
                .collect();
            runs.into_iter()
                .filter_map(|h| h.join().unwrap_or(Err("panicked".into())).err())
                .collect()
        })
    }

    /// Restart, through Patroni's REST API, every member of `cluster` that Patroni
    /// marks pending_restart: replicas first, each back to streaming before the
    /// next; then the leader in place (its downtime timed); then the replicas a
    /// lowered parameter reaches only after that. Bounded to three passes; a member
    /// still pending after them is an error naming it.
    fn restart_pending(&self, cluster: &str) -> anyhow::Result<()> {
        let members = self.fleet.pg_members(cluster);
        let Some(first) = members.first() else {
            return Ok(());
        };
        let read = || -> anyhow::Result<PatroniCluster> {
            let mut last = None;
            for n in &members {
                match patroni_cluster(n, self.reach) {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| anyhow::anyhow!("{cluster} has no member")))
        };
        for _pass in 0..3 {
            let state = read()?;
            let (replicas, leader) = pending_restarts(&state);
            if replicas.is_empty() && leader.is_none() {
                return Ok(());
            }
            for name in replicas.iter().chain(leader.iter()) {
                let node = self.node_by_instance(cluster, name)?;
                let is_leader = leader.as_deref() == Some(name.as_str());
                say(&format!(
                    "{}: restart for parameters pending in {cluster}{}",
                    node.nodename,
                    if is_leader {
                        " (the leader, in place)"
                    } else {
                        ""
                    }
                ));
                let start = Instant::now();
                self.patroni_post(
                    node,
                    "restart",
                    &serde_json::json!({}),
                    self.opts.node_timeout,
                )?;
                self.whole(first, self.opts.node_timeout)?;
                let secs = start.elapsed().as_secs_f64();
                say(&format!("{}: restarted in {secs:.1}s", node.nodename));
                if is_leader {
                    self.haproxy_check(cluster);
                }
                if let Ok(mut rows) = self.rows.lock() {
                    rows.push(Row {
                        node: node.nodename.clone(),
                        step: "restart (pending parameters)".into(),
                        weight: None,
                        old_digest: String::new(),
                        new_digest: String::new(),
                        secs,
                        downtime_secs: is_leader.then_some(secs),
                        note: if is_leader {
                            "the leader restarted in place".into()
                        } else {
                            String::new()
                        },
                    });
                }
            }
        }
        let state = read()?;
        let (replicas, leader) = pending_restarts(&state);
        let still: Vec<String> = replicas.into_iter().chain(leader).collect();
        if still.is_empty() {
            Ok(())
        } else {
            bail!(
                "{cluster}: still pending a restart after three passes: {}",
                still.join(", ")
            )
        }
    }

    /// `POST /<path>` with `body` on a member's own Patroni REST API, with Patroni's
    /// credentials (over TLS with the operator's certificate when the fleet has a
    /// CA); anything but 200 is an error naming the answer. Patroni answers a
    /// restart or a switchover once it is done or it gave up: `request` bounds it.
    fn patroni_post(
        &self,
        node: &Node,
        path: &str,
        body: &serde_json::Value,
        request: Duration,
    ) -> anyhow::Result<()> {
        let (code, text) = self.patroni_post_answer(node, path, body, request)?;
        if code != 200 {
            let base = node.patroni_url().unwrap_or_default();
            bail!("POST {base}/{path}: HTTP {code}: {}", text.trim());
        }
        Ok(())
    }

    /// POST to a Patroni REST endpoint with the cluster's credentials: its status
    /// code and body, whatever they are.
    fn patroni_post_answer(
        &self,
        node: &Node,
        path: &str,
        body: &serde_json::Value,
        request: Duration,
    ) -> anyhow::Result<(u16, String)> {
        let pg = node.pg.as_ref().context("not a PostgreSQL node")?;
        let base = node.patroni_url().context("no Patroni REST API")?;
        let url = format!("{base}/{path}");
        let resp = patroni_client(self.reach, request)?
            .post(&url)
            .basic_auth(
                &pg.params.patroni_username,
                Some(&pg.params.patroni_password),
            )
            .json(body)
            .send()
            .with_context(|| format!("POST {url}"))?;
        let code = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        Ok((code, text))
    }

    fn node_by_instance(&self, cluster: &str, instance: &str) -> anyhow::Result<&Node> {
        self.fleet
            .pg_members(cluster)
            .into_iter()
            .find(|n| n.pg.as_ref().is_some_and(|p| p.name == instance))
            .with_context(|| format!("{cluster} has no member {instance}"))
    }

    /// Poll `ready` every `poll` for at most `limit` (once when `limit` is zero); the
    /// error names the node, what was awaited and the last answer.
    fn bounded(
        &self,
        node: &str,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut() -> Result<(), String>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut tries = 0u32;
        loop {
            tries += 1;
            let last = match ready() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if start.elapsed() >= limit || tries >= 100_000 {
                bail!(
                    "{node}: waited {:.0}s for {what}; last: {last}",
                    start.elapsed().as_secs_f64()
                );
            }
            std::thread::sleep(self.opts.poll);
        }
    }
}

fn first_line(e: &anyhow::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or("").to_string()
}

/// Whether a Patroni cluster is whole: every member listed, one leader running,
/// every other member streaming with lag at most `lag_bytes`.
fn pg_verdict(state: &PatroniCluster, want: usize, lag_bytes: u64) -> Result<(), String> {
    let mut bad = Vec::new();
    let leaders = state
        .members
        .iter()
        .filter(|m| (m.role == "leader" || m.role == "standby_leader") && m.state == "running")
        .count();
    if leaders != 1 {
        bad.push(format!("{leaders} running leader(s)"));
    }
    for m in &state.members {
        if m.role == "leader" || m.role == "standby_leader" {
            continue;
        }
        if m.state != "streaming" {
            bad.push(format!("{} is {}", m.name, m.state));
            continue;
        }
        match m.lag.as_u64() {
            Some(lag) if lag <= lag_bytes => {}
            Some(lag) => bad.push(format!("{} lags {lag} bytes", m.name)),
            None => bad.push(format!("{} lag {}", m.name, m.lag)),
        }
    }
    if state.members.len() < want {
        bad.push(format!("{} of {want} members listed", state.members.len()));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

fn step_label(step: &Step) -> String {
    match &step.kind {
        StepKind::Update { weight } => format!("update ({})", weight.as_str()),
        StepKind::Switchover { to, .. } => format!("switchover to {to}"),
        StepKind::ClusterConfig { .. } => "cluster config".into(),
        StepKind::InPlace { .. } => "in place".into(),
        StepKind::Provision => "provision".into(),
        StepKind::Retire => "retire".into(),
    }
}

/// The final table: node, step, old digest, new digest, time, downtime.
pub fn describe(report: &Report) -> String {
    let mut out = String::new();
    if report.dry_run {
        out.push_str("dry run: nothing was changed\n");
        for s in &report.plan {
            out.push_str(&format!("  {:<16} {}\n", s.node, s.what));
        }
    } else {
        out.push_str(&format!(
            "{:<16} {:<24} {:<12} {:<12} {:>8} {:>9}\n",
            "NODE", "STEP", "OLD", "NEW", "TIME", "DOWNTIME"
        ));
        for r in &report.rows {
            out.push_str(&format!(
                "{:<16} {:<24} {:<12} {:<12} {:>7.1}s {:>9}\n",
                r.node,
                r.step,
                r.old_digest,
                r.new_digest,
                r.secs,
                r.downtime_secs
                    .map(|d| format!("{d:.1}s"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
    }
    for l in &report.left {
        out.push_str(&format!("left alone: {l}\n"));
    }
    if let Some(s) = &report.stopped {
        out.push_str(&format!(
            "stopped at {} ({}): {}\nrun `pigsty rollout` again to resume once it is fixed\n",
            s.node, s.step, s.why
        ));
    }
    out
}

/// What Patroni's answer to `POST /switchover` means: done (`false`), still under
/// way (`true`), or failed. Patroni watches the switchover for about twice its
/// loop_wait (at least 20 s) and then answers 503 `Switchover status unknown`
/// while the switchover goes on (a loaded machine, a slow shutdown checkpoint); only
/// `Switchover failed` and other answers are failures.
fn switchover_answer(code: u16, text: &str) -> anyhow::Result<bool> {
    match code {
        200 => Ok(false),
        503 if text.trim().ends_with("status unknown") => Ok(true),
        _ => bail!("POST /switchover: HTTP {code}: {}", text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, state: &str, lag: serde_json::Value) -> PatroniMember {
        PatroniMember {
            name: name.into(),
            role: role.into(),
            state: state.into(),
            lag,
            pending_restart: false,
        }
    }

    /// The stop command ends the followers of that switchover and nothing else, and
    /// not the pkill that carries it: run against processes whose command lines are
    /// a follower's (python3 sleeping, with the follower's words as its arguments).
    #[test]
    fn a_failed_switchover_stops_its_followers_only() {
        let words = |to: &str| -> Vec<String> {
            follow_command(to)
                .split_whitespace()
                .skip(3) // sudo -n pigsty
                .map(str::to_string)
                .collect()
        };
        let spawn = |to: &str| {
            std::process::Command::new("python3")
                .args(["-c", "import time; time.sleep(60)"])
                .args(words(to))
                .spawn()
                .expect("python3")
        };
        let mut this = spawn("pg-test-2");
        let mut other = spawn("pg-test-22");
        // Give both time to exec (their command lines are python3's once it runs).
        std::thread::sleep(std::time::Duration::from_millis(300));
        let stop = stop_follow_command("pg-test-2");
        let stop = stop
            .strip_prefix("sudo -n ")
            .expect("the stop command uses sudo");
        let st = std::process::Command::new("sh")
            .args(["-c", stop])
            .status()
            .expect("sh");
        assert!(st.success(), "pkill found the follower: {st}");
        let waited = (0..50).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            this.try_wait().unwrap()
        });
        assert!(waited.is_some(), "the follower of pg-test-2 still runs");
        assert!(
            other.try_wait().unwrap().is_none(),
            "the follower of another switchover (pg-test-22) was stopped too"
        );
        let _ = other.kill();
        let _ = other.wait();
    }

    #[test]
    fn a_switchover_patroni_stopped_watching_is_waited_for_not_failed() {
        assert!(!switchover_answer(200, "Successfully switched over to \"pg-a-2\"").unwrap());
        assert!(switchover_answer(503, "Switchover status unknown").unwrap());
        let err = switchover_answer(503, "Switchover failed").unwrap_err();
        assert!(err.to_string().contains("Switchover failed"), "{err}");
        let err = switchover_answer(412, "candidate name does not match").unwrap_err();
        assert!(err.to_string().contains("HTTP 412"), "{err}");
    }

    #[test]
    fn pending_restarts_take_replicas_before_the_leader() {
        let pending = |mut m: PatroniMember| {
            m.pending_restart = true;
            m
        };
        let json = serde_json::json!(0);
        let none = PatroniCluster {
            members: vec![
                member("a", "leader", "running", json.clone()),
                member("b", "replica", "streaming", json.clone()),
            ],
        };
        assert_eq!(pending_restarts(&none), (vec![], None));
        // Leader and a replica pending: the replica now, the leader on a later pass.
        let both = PatroniCluster {
            members: vec![
                pending(member("a", "leader", "running", json.clone())),
                pending(member("b", "replica", "streaming", json.clone())),
                member("c", "replica", "streaming", json.clone()),
            ],
        };
        assert_eq!(pending_restarts(&both), (vec!["b".to_string()], None));
        let leader_only = PatroniCluster {
            members: vec![
                pending(member("a", "leader", "running", json.clone())),
                member("b", "replica", "streaming", json.clone()),
            ],
        };
        assert_eq!(
            pending_restarts(&leader_only),
            (vec![], Some("a".to_string()))
        );
        // Patroni's own /cluster spelling.
        let read: PatroniCluster = serde_json::from_str(
            r#"{"members":[{"name":"pg-test-1","role":"leader","state":"running",
                "pending_restart":true,"pending_restart_reason":{"max_connections":
                {"old_value":"100","new_value":"200"}}},
               {"name":"pg-test-2","role":"replica","state":"streaming","lag":0}]}"#,
        )
        .unwrap();
        assert_eq!(
            pending_restarts(&read),
            (vec![], Some("pg-test-1".to_string()))
        );
    }

    #[test]
    fn a_cluster_is_whole_only_with_one_running_leader_and_replicas_streaming_close() {
        let ok = PatroniCluster {
            members: vec![
                member("pg-1", "leader", "running", serde_json::Value::Null),
                member("pg-2", "replica", "streaming", 0.into()),
                member("pg-3", "sync_standby", "streaming", 1024.into()),
            ],
        };
        assert_eq!(pg_verdict(&ok, 3, 1 << 20), Ok(()));
        assert_eq!(
            pg_verdict(&ok, 4, 1 << 20),
            Err("3 of 4 members listed".into())
        );
        assert_eq!(pg_verdict(&ok, 3, 100), Err("pg-3 lags 1024 bytes".into()));
        let restarting = PatroniCluster {
            members: vec![
                member("pg-1", "leader", "running", serde_json::Value::Null),
                member("pg-2", "replica", "starting", "unknown".into()),
            ],
        };
        assert_eq!(
            pg_verdict(&restarting, 2, 1 << 20),
            Err("pg-2 is starting".into())
        );
        let headless = PatroniCluster {
            members: vec![member("pg-2", "replica", "streaming", 0.into())],
        };
        assert_eq!(
            pg_verdict(&headless, 1, 1 << 20),
            Err("0 running leader(s)".into())
        );
    }

    #[test]
    fn steps_run_by_phase_and_lane_in_order() {
        let step = |node: &str, lane: &str, kind: StepKind| Step {
            node: node.into(),
            what: String::new(),
            kind,
            lane: lane.into(),
        };
        let update = || StepKind::Update {
            weight: Weight::Config,
        };
        let plan = vec![
            step("etcd-1", "dcs", update()),
            step("etcd-2", "dcs", update()),
            step("pg-a-2", "pg:pg-a", update()),
            step("pg-b-2", "pg:pg-b", update()),
            step(
                "pg-a-1",
                "pg:pg-a",
                StepKind::Switchover {
                    cluster: "pg-a".into(),
                    to: "pg-a-2".into(),
                },
            ),
            step("pg-a-1", "pg:pg-a", update()),
            step("redis-1", "node:redis-1", update()),
            step("old-1", "gone", StepKind::Retire),
        ];
        let got: Vec<(u8, Vec<Vec<String>>)> = phases(&plan)
            .into_iter()
            .map(|(p, lanes)| {
                let lanes = lanes
                    .iter()
                    .map(|l| {
                        l.iter()
                            .map(|s| format!("{} {}", s.node, step_label(s)))
                            .collect()
                    })
                    .collect();
                (p, lanes)
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (
                    1,
                    vec![s(&["etcd-1 update (config)", "etcd-2 update (config)"])]
                ),
                (
                    2,
                    vec![
                        s(&[
                            "pg-a-2 update (config)",
                            "pg-a-1 switchover to pg-a-2",
                            "pg-a-1 update (config)"
                        ]),
                        s(&["pg-b-2 update (config)"])
                    ]
                ),
                (3, vec![s(&["redis-1 update (config)"])]),
                (4, vec![s(&["old-1 retire"])]),
            ]
        );
    }

    #[test]
    fn what_agent_apply_check_prints_is_read() {
        let json = r#"{"bundle":"ab","files":[{"path":"/etc/patroni/patroni.yml","change":"modified","effect":{"action":"restart","target":"patroni.service"},"why":"x"}],"actions":["would take it in without a boot"],"needs_boot":false,"was":"cd"}"#;
        let c: Checked = serde_json::from_str(json).unwrap();
        assert!(!c.needs_boot);
        assert_eq!(
            c.files[0].effect,
            crate::diff::Effect::Restart("patroni.service".into())
        );
    }
}
