//! The first-boot agent: `pigsty agent firstboot` reads `/etc/pigsty/node.json` and
//! joins the node into its clusters by running the plan's join steps in `after` order
//! (etcd → MinIO → Patroni → pgbouncer/haproxy → database objects → pgBackRest).
//!
//! Every step is idempotent: it looks at what is already there (a running service, an
//! etcd member, a Patroni leader, a bucket) before it changes anything, so a run that
//! was killed at any point completes when started again. A step marked done in the
//! state file is not run again. Every wait goes through [`retry::Policy`].
//!
//! Progress goes to the journal (tracing on stderr), to the state file
//! (`<root>/var/lib/pigsty/state.json`), and to etcd under `/pigsty/nodes/<name>` once
//! etcd is up.

pub mod apply;
pub mod etcd;
mod etcd_join;
pub mod fleet;
pub mod haproxy;
pub mod install;
pub mod minio;
pub mod patroni;
mod ports;
mod postgres;
pub mod preinit;
pub mod redis;
pub mod retry;
pub mod service;
pub mod state;
pub mod tune;
pub mod update;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::plan::node_json::NodeJson;
use crate::plan::{JoinStep, StepId};
use retry::Policy;
use service::ServiceManager;
use state::{State, StepStatus, Store, now};

/// The etcd key space where nodes report their join state.
pub const NODES_PREFIX: &str = "/pigsty/nodes/";

/// How the agent runs: where the node's files are and how long it may wait.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node's root directory (`/` on a node; a temp dir in tests).
    pub root: PathBuf,
    /// Bound of each wait (a step may wait more than once).
    pub wait: Duration,
    /// Bound of one request to a peer.
    pub request: Duration,
    /// Test hook: stop as if killed on reaching this checkpoint (`etcd:member-added`).
    pub crash_at: Option<String>,
    /// On a node booted from an A/B slot: this boot's bundle digest (a new one joins
    /// again) and what the slots hold.
    pub bundle: Option<String>,
    pub slots: Option<update::Slots>,
}

impl Options {
    pub fn new(root: impl Into<PathBuf>) -> Options {
        Options {
            root: root.into(),
            wait: Duration::from_secs(600),
            request: Duration::from_secs(5),
            crash_at: None,
            bundle: None,
            slots: None,
        }
    }

    pub fn policy(&self) -> Policy {
        Policy::with_deadline(self.wait)
    }

    /// An HTTP client for peers, each connect and request bounded by `request`.
    pub fn http(&self) -> anyhow::Result<crate::http::Client> {
        crate::http::client(self.request, self.request)
    }
}

/// The agent stopped on purpose at a checkpoint (see [`Options::crash_at`]); the state
/// file is left as a killed agent would leave it.
#[derive(Debug, thiserror::Error)]
#[error("simulated crash at {0}")]
pub struct Crashed(pub String);

/// A progress line on stderr, which pigsty-firstboot.service sends to the journal
/// (and the console) whatever the log level.
fn journal(line: &str) {
    eprintln!("pigsty agent: {line}");
}

/// One run of the agent on one node.
pub struct Agent<'a> {
    pub opts: &'a Options,
    pub doc: NodeJson,
    pub services: &'a dyn ServiceManager,
    store: Store,
    pub state: State,
    /// Where progress is reported once etcd is up.
    reporter: Option<etcd::Client>,
}

/// Run the first-boot join to the end (or to the first failed step). Returns the state.
pub fn firstboot(opts: &Options, services: &dyn ServiceManager) -> anyhow::Result<State> {
    let store = Store::new(&opts.root);
    let bundle = opts.bundle.as_deref();
    if store.is_finished(bundle) {
        tracing::info!(marker = %store.done_marker().display(), "first boot already done");
        let state = store.load()?;
        // What the slots hold may have changed since (a fallback from a trial that
        // failed): say it, here and in etcd.
        if let Some(slots) = &opts.slots
            && state.slots.as_ref() != Some(slots)
        {
            record_slots(opts, services, slots.clone())?;
            return store.load();
        }
        return Ok(state);
    }
    let doc = NodeJson::load(&opts.root)?;
    let steps = doc.ordered_steps()?;
    let mut state = store.load()?;
    state.plan_digest = crate::plan::ImageIdentity::read(&opts.root)
        .map(|i| i.plan_digest)
        .unwrap_or_default();
    state.host_keys = state::host_keys(&opts.root);
    if let Some(b) = bundle
        && state.bundle != b
    {
        // Booted with another bundle than the state's (an update, or a fallback):
        // every step runs again and finds what the earlier runs made.
        if !state.bundle.is_empty() || state.done {
            journal(&format!(
                "a new node bundle (sha256 {b}): joining again over the existing data"
            ));
        }
        state.steps.clear();
        state.done = false;
        state.current.clear();
        state.bundle = b.to_string();
    }
    if opts.slots.is_some() {
        state.slots = opts.slots.clone();
    }
    state.node = doc.node.nodename.clone();
    state.order = steps.iter().map(|s| s.id.as_str().to_string()).collect();
    let mut agent = Agent {
        opts,
        doc,
        services,
        store,
        state,
        reporter: None,
    };
    agent.resume_reporting();
    for step in &steps {
        // `done` always runs: a power cut between its state write and the marker
        // leaves every step done and no marker.
        if agent.state.is_done(step.id.as_str()) && step.id != StepId::Done {
            tracing::info!(step = %step.id, "already done");
            continue;
        }
        agent.run_step(step)?;
    }
    Ok(agent.state)
}

impl Agent<'_> {
    fn run_step(&mut self, step: &JoinStep) -> anyhow::Result<()> {
        journal(&format!("step {}: running: {}", step.id, step.action));
        let s = self.state.step(step.id.as_str());
        s.status = StepStatus::Running;
        s.attempts += 1;
        s.started_at = now();
        s.error.clear();
        self.state.current = step.id.as_str().to_string();
        self.save()?;
        let result = self.dispatch(step);
        if let Err(e) = &result
            && e.downcast_ref::<Crashed>().is_some()
        {
            return result.map(|_| ());
        }
        let s = self.state.step(step.id.as_str());
        s.finished_at = now();
        match &result {
            Ok(detail) => {
                journal(&format!("step {}: done: {detail}", step.id));
                s.status = StepStatus::Done;
                s.detail = detail.clone();
            }
            Err(e) => {
                journal(&format!("step {}: failed: {e:#}", step.id));
                s.status = StepStatus::Failed;
                s.error = format!("{e:#}");
            }
        }
        self.save()?;
        result
            .map(|_| ())
            .with_context(|| format!("join step {}", step.id))
    }

    fn dispatch(&mut self, step: &JoinStep) -> anyhow::Result<String> {
        match step.id {
            StepId::Etcd => etcd_join::join(self),
            StepId::EtcdReady => etcd_join::wait_ready(self),
            StepId::Minio => minio::start(self),
            StepId::MinioBuckets => minio::buckets(self),
            StepId::MinioReady => postgres::repo_ready(self),
            StepId::Patroni => patroni::join(self),
            StepId::Pgbouncer => ports::pgbouncer(self),
            StepId::Haproxy => ports::haproxy(self),
            StepId::PgUsers | StepId::PgDatabases => postgres::apply_sql(self, step.id),
            StepId::PgbackrestStanza => postgres::pgbackrest_stanza(self),
            StepId::Pgbackrest => postgres::pgbackrest(self),
            StepId::Redis => ports::redis(self),
            StepId::Infra => ports::infra(self),
            StepId::Done => self.finish(),
        }
    }

    /// The last step: the state says done (locally and in etcd) first, then the done
    /// marker makes the unit's condition skip every later boot.
    fn finish(&mut self) -> anyhow::Result<String> {
        self.state.done = true;
        // Made at first boot beside the join: there by now, if not at its start.
        self.state.host_keys = state::host_keys(&self.opts.root);
        let detail = format!("wrote {}", self.store.done_marker().display());
        let s = self.state.step(StepId::Done.as_str());
        s.status = StepStatus::Done;
        s.finished_at = now();
        s.detail = detail.clone();
        self.save()?;
        self.checkpoint("done:reported")?;
        self.store.mark_finished(self.opts.bundle.as_deref())?;
        Ok(detail)
    }

    /// Stop here if a test asked for a crash at this point.
    pub fn checkpoint(&self, point: &str) -> anyhow::Result<()> {
        tracing::debug!(point, "checkpoint");
        if self.opts.crash_at.as_deref() == Some(point) {
            return Err(Crashed(point.to_string()).into());
        }
        Ok(())
    }

    /// Save the state file, then copy it to etcd if etcd is up (best effort: a node
    /// that cannot report still joins).
    fn save(&mut self) -> anyhow::Result<()> {
        self.store.save(&mut self.state)?;
        if let Some(client) = &self.reporter {
            let key = format!("{NODES_PREFIX}{}", self.state.node);
            let value = serde_json::to_vec(&self.state).context("encoding the state")?;
            if let Err(e) = client.put(&key, &value) {
                tracing::warn!("reporting progress to etcd at {}: {e:#}", client.base());
            }
        }
        Ok(())
    }

    /// Report from now on through this etcd endpoint.
    pub(crate) fn report_to(&mut self, client: etcd::Client) {
        self.reporter = Some(client);
    }

    /// A resumed run whose etcd step is done reports from the start.
    fn resume_reporting(&mut self) {
        if self.state.is_done(StepId::Etcd.as_str())
            || self.state.is_done(StepId::EtcdReady.as_str())
        {
            match etcd_join::any_healthy(self) {
                Some(client) => self.report_to(client),
                None => tracing::warn!("etcd is not answering yet; progress stays local"),
            }
        }
    }

    /// How this node reaches etcd: TLS and its user when node.json says so (read
    /// from the node's files), else plain http.
    pub fn etcd_access(&self) -> anyhow::Result<etcd::Access> {
        let Some(a) = self.doc.etcd.as_ref().and_then(|e| e.access.as_ref()) else {
            return Ok(etcd::Access::default());
        };
        let path = |p: &str| self.path(p).to_string_lossy().into_owned();
        Ok(etcd::Access {
            tls: Some(crate::http::Tls::read(
                &path(&a.ca),
                &path(&a.cert),
                &path(&a.key),
            )?),
            user: Some((a.user.clone(), a.password.clone())),
        })
    }

    /// A client of one of this node's etcd endpoints, with its access.
    pub fn etcd_client(&self, url: &str) -> anyhow::Result<etcd::Client> {
        etcd::Client::with(url, self.opts.request, &self.etcd_access()?)
    }

    /// A client of the cluster's Patroni REST APIs: over TLS trusting the fleet CA
    /// when they serve https (`patroni_ssl_enabled`), else [`Options::http`].
    pub fn patroni_http(&self) -> anyhow::Result<crate::http::Client> {
        let https = self
            .doc
            .pg
            .as_ref()
            .is_some_and(|p| p.patroni_url.starts_with("https://"));
        if !https {
            return self.opts.http();
        }
        use crate::render::context::{NODE_CA, PG_CERT, PG_KEY};
        let path = |p: &str| self.path(p).to_string_lossy().into_owned();
        let tls = crate::http::Tls::read(&path(NODE_CA), &path(PG_CERT), &path(PG_KEY))?;
        crate::http::client_tls(self.opts.request, self.opts.request, &tls)
    }

    /// A path under the node's root (`/etc/default/etcd` → `<root>/etc/default/etcd`).
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.opts.root.join(absolute.trim_start_matches('/'))
    }
}

/// The unit that runs the join at every boot.
pub const FIRSTBOOT_UNIT: &str = "pigsty-firstboot.service";

/// Whether this node is healthy on its slot: the join finished for this boot's
/// bundle, and every unit the agent started is active. A join that stopped at a
/// failure (its unit failed: a step failed, or its node.json could not be read) will
/// not finish on this boot: [`update::Health::Never`].
pub fn node_health(
    root: &std::path::Path,
    bundle: &str,
    services: &dyn ServiceManager,
) -> anyhow::Result<update::Health> {
    use update::Health;
    let store = Store::new(root);
    if !store.is_finished(Some(bundle)) {
        let state = store.load()?;
        let at = if state.bundle != bundle || state.current.is_empty() {
            "not started".to_string()
        } else {
            let step = state.current_step();
            let mut at = format!("at step {} ({})", state.current, step.status.as_str());
            if !step.error.is_empty() {
                at.push_str(&format!(": {}", step.error));
            }
            at
        };
        // Failed, and still not finished (it may have finished in between).
        if services.is_failed(FIRSTBOOT_UNIT)? && !store.is_finished(Some(bundle)) {
            return Ok(Health::Never(format!(
                "the join for this bundle stopped, {at}: {FIRSTBOOT_UNIT} failed"
            )));
        }
        return Ok(Health::NotYet(format!(
            "the join for this bundle is not done: {at}"
        )));
    }
    let dir = root.join(state::STATE_DIR).join("enabled");
    let mut down = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let unit = e.file_name().to_string_lossy().into_owned();
        if !services.is_active(&unit)? {
            down.push(unit);
        }
    }
    if down.is_empty() {
        Ok(Health::Healthy)
    } else {
        down.sort();
        Ok(Health::NotYet(format!("not active: {}", down.join(", "))))
    }
}

/// Record what the slots hold in the state file and, when etcd answers, in the
/// node's record there.
pub fn record_slots(
    opts: &Options,
    services: &dyn ServiceManager,
    slots: update::Slots,
) -> anyhow::Result<()> {
    let store = Store::new(&opts.root);
    let mut state = store.load()?;
    state.slots = Some(slots);
    let doc = NodeJson::load(&opts.root)?;
    let mut agent = Agent {
        opts,
        doc,
        services,
        store,
        state,
        reporter: None,
    };
    if agent.doc.etcd.is_some()
        && let Some(client) = etcd_join::any_healthy(&agent)
    {
        agent.report_to(client);
    }
    agent.save()
}

/// Every node's reported state under `/pigsty/nodes/`, from the first endpoint that
/// answers.
pub fn read_fleet(
    endpoints: &[String],
    timeout: Duration,
    access: &etcd::Access,
) -> anyhow::Result<std::collections::BTreeMap<String, State>> {
    let mut errors = Vec::new();
    for url in endpoints {
        let pairs = match etcd::Client::with(url, timeout, access)
            .and_then(|c| c.get_prefix(NODES_PREFIX))
        {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("{e:#}"));
                continue;
            }
        };
        let mut out = std::collections::BTreeMap::new();
        for (key, value) in pairs {
            let name = key.trim_start_matches(NODES_PREFIX).to_string();
            match serde_json::from_slice::<State>(&value) {
                Ok(state) => {
                    out.insert(name, state);
                }
                Err(e) => tracing::warn!("{key}: not a node state: {e}"),
            }
        }
        return Ok(out);
    }
    anyhow::bail!(
        "no etcd endpoint answered ({}): {}",
        endpoints.join(", "),
        errors.join("; ")
    )
}

/// One row of `pigsty status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetRow {
    pub nodename: String,
    pub ip: String,
    /// `done`, `<step> running`, `<step> failed`, or `unreported`.
    pub state: String,
    pub note: String,
    pub report: Option<State>,
}

/// The inventory's nodes beside what each reported (nodes etcd does not know show as
/// `unreported`; reports of nodes not in the inventory are listed after them).
pub fn fleet_rows(
    fleet: &crate::model::Fleet,
    reported: &std::collections::BTreeMap<String, State>,
) -> Vec<FleetRow> {
    let mut rows: Vec<FleetRow> = fleet
        .nodes
        .iter()
        .map(|n| row(&n.nodename, &n.ip.to_string(), reported.get(&n.nodename)))
        .collect();
    for (name, state) in reported {
        if !fleet.nodes.iter().any(|n| &n.nodename == name) {
            let mut r = row(name, "", Some(state));
            r.note = format!("not in the inventory; {}", r.note);
            rows.push(r);
        }
    }
    rows
}

fn row(name: &str, ip: &str, state: Option<&State>) -> FleetRow {
    let (st, note) = match state {
        None => ("unreported".to_string(), String::new()),
        Some(s) if s.done => ("done".to_string(), format!("{} step(s)", s.order.len())),
        Some(s) => {
            let step = s.current_step();
            (
                format!("{} {}", s.current, step.status.as_str()),
                step.note().to_string(),
            )
        }
    };
    FleetRow {
        nodename: name.to_string(),
        ip: ip.to_string(),
        state: st,
        note,
        report: state.cloned(),
    }
}
