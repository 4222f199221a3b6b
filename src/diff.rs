//! `pigsty diff`: what an inventory change does to each node, the lightest way to give
//! every changed node exactly the files its new image would hold, and the order a
//! rollout takes them in. A pure function of two compiled fleets (the one the nodes
//! were built from and the one the inventory says now).
//!
//! Each changed node gets one of three weights, lightest first:
//! - **database**: only database objects differ (the SQL the agent applies on the
//!   primary, pgbouncer's user and database lists): applied online, no restart;
//! - **config**: rendered files differ: its new node bundle is swapped in and the
//!   services that read them are reloaded or restarted (no reboot);
//! - **image**: its package set or base differs, or a file changed that only a boot
//!   takes in (its hostname, network, the fleet CA): the A/B update, with a reboot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compile::Compiled;
use crate::model::{Module, Node, PgRole};
use crate::render::RenderedFile;

/// How much a node's change needs, lightest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weight {
    Database,
    Config,
    Image,
}

impl Weight {
    pub fn as_str(self) -> &'static str {
        match self {
            Weight::Database => "database",
            Weight::Config => "config",
            Weight::Image => "image",
        }
    }
}

/// What a changed file needs on a running node to take effect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "action", content = "target", rename_all = "kebab-case")]
pub enum Effect {
    /// Nothing: the file is read when it is used (a script, cron, sudoers).
    None,
    /// Database objects: the agent's idempotent SQL, run on the cluster's primary.
    Sql,
    /// `systemctl reload-or-restart` of the unit.
    Reload(String),
    /// Patroni's cluster-wide configuration (`bootstrap.dcs`, read only when the
    /// cluster is made): replaced by `patronictl edit-config --replace`, which
    /// writes the DCS.
    ClusterConfig,
    /// A command that applies the file (`sysctl --system`).
    Run(String),
    /// `systemctl restart` of the unit (after `daemon-reload` for a unit file).
    Restart(String),
    /// The agent runs its join again with the new node.json (every step idempotent).
    Agent,
    /// Only a boot takes it in: the A/B update.
    Reboot,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::None => f.write_str("none (read when used)"),
            Effect::Sql => f.write_str("sql on the primary"),
            Effect::Reload(u) => write!(f, "reload {}", short(u)),
            Effect::ClusterConfig => f.write_str("replace Patroni's cluster config (edit-config)"),
            Effect::Run(c) => write!(f, "run {c}"),
            Effect::Restart(u) => write!(f, "restart {}", short(u)),
            Effect::Agent => f.write_str("rerun the agent's join"),
            Effect::Reboot => f.write_str("reboot"),
        }
    }
}

fn short(unit: &str) -> &str {
    unit.strip_suffix(".service").unwrap_or(unit)
}

/// How a file differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileChange {
    Added,
    Removed,
    /// Its content differs.
    Modified,
    /// Only its mode or owner differs.
    Attributes,
}

impl FileChange {
    fn sign(self) -> char {
        match self {
            FileChange::Added => '+',
            FileChange::Removed => '-',
            FileChange::Modified => '~',
            FileChange::Attributes => '=',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDiff {
    pub path: String,
    pub change: FileChange,
    pub effect: Effect,
    /// Why the effect is what it is, where the path alone does not say
    /// (`shared_buffers needs a restart`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Changed,
    /// In the inventory only: its image is built and it is provisioned (PXE or VM).
    New,
    /// In the old inventory only.
    Gone,
}

/// One node that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDiff {
    pub nodename: String,
    pub ip: String,
    pub status: Status,
    /// For a changed node: what its change needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<Weight>,
    /// Why the weight is what it is.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_digest: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages_added: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages_removed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileDiff>,
    /// What a rollout does on the node, in order (a changed node only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

/// One step of the rollout, in the order it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub node: String,
    pub what: String,
    /// What the step is, for the rollout that runs it.
    #[serde(flatten)]
    pub kind: StepKind,
    /// Steps of one lane run one at a time, in order; lanes of one phase share
    /// nothing (`rollout --parallel` runs them side by side).
    pub lane: String,
}

/// What a rollout step does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    /// A node the nodes do not know yet: its image is built and booted by hand.
    Provision,
    /// The node takes its new image, as `weight` says.
    Update { weight: Weight },
    /// The cluster's Patroni configuration is replaced (done by the first member's
    /// apply, before any member restarts).
    ClusterConfig { cluster: String },
    /// The primary hands over to `to` through Patroni before its update.
    Switchover { cluster: String, to: String },
    /// A cluster with no replica to switch over to: down while its primary restarts.
    InPlace { cluster: String },
    /// A node no longer in the inventory: left running.
    Retire,
}

impl Step {
    /// The phase the step's lane belongs to: new nodes, etcd/MinIO-only members (one
    /// at a time, whatever `--parallel`), PostgreSQL clusters, others, gone nodes.
    pub fn phase(&self) -> u8 {
        match self.lane.split(':').next().unwrap_or("") {
            "new" => 0,
            "dcs" => 1,
            "pg" => 2,
            "gone" => 4,
            _ => 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetDiff {
    /// What the inventory was compared with.
    pub against: String,
    pub nodes: Vec<NodeDiff>,
    pub unchanged: usize,
    pub rollout: Vec<Step>,
}

impl FleetDiff {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// A compiled node of one side.
pub struct Side<'a> {
    pub node: &'a Node,
    pub compiled: &'a Compiled,
}

/// A fleet's nodes beside what compile made of each (in the same order).
pub fn sides<'a>(fleet: &'a crate::model::Fleet, compiled: &'a [Compiled]) -> Vec<Side<'a>> {
    fleet
        .nodes
        .iter()
        .zip(compiled)
        .map(|(node, compiled)| Side { node, compiled })
        .collect()
}

/// Compare the fleet the nodes run (`old`) with the one the inventory says (`new`).
/// Nodes are the same node when they have the same IP (the inventory's host key).
pub fn diff(against: &str, old: &[Side], new: &[Side]) -> FleetDiff {
    let old_by_ip: BTreeMap<String, &Side> =
        old.iter().map(|s| (s.node.ip.to_string(), s)).collect();
    let new_ips: BTreeSet<String> = new.iter().map(|s| s.node.ip.to_string()).collect();
    let mut nodes = Vec::new();
    let mut unchanged = 0;
    for side in new {
        match old_by_ip.get(&side.node.ip.to_string()) {
            None => nodes.push(NodeDiff {
                nodename: side.node.nodename.clone(),
                ip: side.node.ip.to_string(),
                status: Status::New,
                weight: None,
                reason: format!(
                    "not in {against}: build its image and provision it \
                     (pigsty build-image --role {})",
                    side.node.nodename
                ),
                old_digest: None,
                new_digest: Some(side.compiled.plan.digest.clone()),
                packages_added: Vec::new(),
                packages_removed: Vec::new(),
                files: Vec::new(),
                actions: Vec::new(),
            }),
            Some(was) if was.compiled.plan.digest == side.compiled.plan.digest => unchanged += 1,
            Some(was) => nodes.push(node_diff(was, side)),
        }
    }
    for side in old {
        if !new_ips.contains(&side.node.ip.to_string()) {
            nodes.push(NodeDiff {
                nodename: side.node.nodename.clone(),
                ip: side.node.ip.to_string(),
                status: Status::Gone,
                weight: None,
                reason: "no longer in the inventory: the rollout leaves it running; \
                         retire it by hand (its etcd member, Patroni member and MinIO \
                         drives stay listed until then)"
                    .to_string(),
                old_digest: Some(side.compiled.plan.digest.clone()),
                new_digest: None,
                packages_added: Vec::new(),
                packages_removed: Vec::new(),
                files: Vec::new(),
                actions: Vec::new(),
            });
        }
    }
    let rollout = order(&nodes, new);
    FleetDiff {
        against: against.to_string(),
        nodes,
        unchanged,
        rollout,
    }
}

fn node_diff(old: &Side, new: &Side) -> NodeDiff {
    let (op, np) = (&old.compiled.plan, &new.compiled.plan);
    let old_pkgs: BTreeSet<&String> = op.packages.iter().collect();
    let new_pkgs: BTreeSet<&String> = np.packages.iter().collect();
    let packages_added: Vec<String> = new_pkgs
        .difference(&old_pkgs)
        .map(|p| p.to_string())
        .collect();
    let packages_removed: Vec<String> = old_pkgs
        .difference(&new_pkgs)
        .map(|p| p.to_string())
        .collect();
    let files = file_diffs(&old.compiled.files, &new.compiled.files);
    let mut reasons = Vec::new();
    if op.image != np.image {
        reasons.push(format!(
            "its base differs ({} {} → {} {})",
            op.image.name, op.image.suite, np.image.name, np.image.suite
        ));
    }
    if !packages_added.is_empty() || !packages_removed.is_empty() {
        reasons.push("its packages differ".to_string());
    }
    let (weight, reason, actions) = weigh(&files, reasons);
    NodeDiff {
        nodename: new.node.nodename.clone(),
        ip: new.node.ip.to_string(),
        status: Status::Changed,
        weight: Some(weight),
        reason,
        old_digest: Some(op.digest.clone()),
        new_digest: Some(np.digest.clone()),
        packages_added,
        packages_removed,
        files,
        actions,
    }
}

/// How heavy a node's change is, from its files and what else needs a new image
/// (`reasons`: its base, its packages): the weight, why, and what a rollout does.
pub fn weigh(files: &[FileDiff], mut reasons: Vec<String>) -> (Weight, String, Vec<String>) {
    let rebooting: Vec<&str> = files
        .iter()
        .filter(|f| f.effect == Effect::Reboot)
        .map(|f| f.path.as_str())
        .collect();
    if !rebooting.is_empty() {
        reasons.push(format!("only a boot takes in {}", rebooting.join(", ")));
    }
    if !reasons.is_empty() {
        (
            Weight::Image,
            reasons.join("; "),
            vec!["A/B update to its new image (reboot)".to_string()],
        )
    } else if files.is_empty() {
        // Same files and packages, another digest: services or join steps differ,
        // which node.json carries; stay on the safe side.
        (
            Weight::Image,
            "its services or join steps differ".to_string(),
            vec!["A/B update to its new image (reboot)".to_string()],
        )
    } else if files.iter().all(is_database) {
        (
            Weight::Database,
            "only database objects differ".to_string(),
            online_actions(files),
        )
    } else {
        (
            Weight::Config,
            "only rendered files differ".to_string(),
            online_actions(files),
        )
    }
}

/// A file whose change is a database object's: the SQL, pgbouncer's user list, and
/// pgbouncer.ini where only its `[databases]` and `[users]` sections differ (and the
/// identity file, which any change changes).
fn is_database(f: &FileDiff) -> bool {
    f.effect == Effect::Sql
        // The image's identity (its plan digest) changes with any change at all, and
        // node.json may differ only in the inventory file's name.
        || f.path == crate::plan::IDENTITY_PATH
        || (f.path == "/etc/pigsty/node.json" && f.effect == Effect::None)
        || (f.path == "/etc/pgbouncer/userlist.txt" && f.change == FileChange::Modified)
        || (f.path == "/etc/pgbouncer/pgbouncer.ini" && f.why == POOLS_ONLY)
}

const POOLS_ONLY: &str = "only its [databases] and [users] sections differ";

/// How database objects are applied: every member of a writable cluster carries the
/// SQL, and the one that leads applies it when its join runs (a replica skips it).
const SQL_ACTION: &str = "the join again: the member that leads applies the SQL";

/// What a config or database change does on the node, in order: the new bundle,
/// then each effect once (restarts after reloads; the SQL last, on a primary).
fn online_actions(files: &[FileDiff]) -> Vec<String> {
    let mut actions = vec!["swap in its new node bundle".to_string()];
    let effects: BTreeSet<&Effect> = files.iter().map(|f| &f.effect).collect();
    let unit_files = files.iter().any(|f| f.path.starts_with(SYSTEMD_DIR));
    if unit_files {
        actions.push("systemctl daemon-reload".to_string());
    }
    // Patroni reads the copy of patroni.yml that tune sizes for the machine.
    if effects.iter().any(|e| patroni_reads(e)) {
        actions.push(format!("run {TUNE}"));
    }
    for e in effects {
        match e {
            Effect::None | Effect::Reboot => {}
            Effect::Run(c) if c == TUNE => {}
            Effect::Sql => {
                actions.push(SQL_ACTION.to_string());
            }
            // Once per cluster, before its members restart: a step of its own.
            Effect::ClusterConfig => {}
            other => actions.push(other.to_string()),
        }
    }
    actions
}

pub fn patroni_reads(e: &Effect) -> bool {
    match e {
        Effect::Reload(u) | Effect::Restart(u) => {
            u == "patroni.service" || u.starts_with("postgresql")
        }
        Effect::Run(c) => c == TUNE,
        Effect::ClusterConfig => true,
        _ => false,
    }
}

/// Files of both sides by path, with the effect of each that differs.
pub fn file_diffs(old: &[RenderedFile], new: &[RenderedFile]) -> Vec<FileDiff> {
    let old: BTreeMap<&str, &RenderedFile> = old.iter().map(|f| (f.path.as_str(), f)).collect();
    let new: BTreeMap<&str, &RenderedFile> = new.iter().map(|f| (f.path.as_str(), f)).collect();
    let paths: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    let mut out = Vec::new();
    for path in paths {
        let (change, before, after) = match (old.get(path), new.get(path)) {
            (Some(a), Some(b)) if a.content != b.content => (FileChange::Modified, *a, *b),
            (Some(a), Some(b)) if a.mode != b.mode || a.owner != b.owner => {
                (FileChange::Attributes, *a, *b)
            }
            (Some(_), Some(_)) => continue,
            (Some(a), None) => (FileChange::Removed, *a, *a),
            (None, Some(b)) => (FileChange::Added, *b, *b),
            (None, None) => continue,
        };
        let (effect, why) = match change {
            // The running root is read-only: a path cannot appear or go there.
            FileChange::Added | FileChange::Removed => (
                Effect::Reboot,
                format!(
                    "{} file: the running root is read-only",
                    if change == FileChange::Added {
                        "a new"
                    } else {
                        "a removed"
                    }
                ),
            ),
            _ => effect_of(path, change, &before.content, &after.content),
        };
        out.push(FileDiff {
            path: path.to_string(),
            change,
            effect,
            why,
        });
    }
    out
}

const SYSTEMD_DIR: &str = "/etc/systemd/system/";

/// Units that run once at boot: a new unit file of theirs waits for the next boot
/// without a reboot being needed for the rest.
const BOOT_ONCE: &[&str] = &[
    "pigsty-firstboot.service",
    "pigsty-host-keys.service",
    "pigsty-tune.service",
];

/// What `path` needs on a running node to take effect, and why where the path alone
/// does not say.
fn effect_of(path: &str, change: FileChange, old: &[u8], new: &[u8]) -> (Effect, String) {
    let none = (Effect::None, String::new());
    let reload = |u: &str| (Effect::Reload(u.to_string()), String::new());
    let restart = |u: &str| (Effect::Restart(u.to_string()), String::new());
    let run = |c: &str| (Effect::Run(c.to_string()), String::new());
    if let Some(rest) = path.strip_prefix(SYSTEMD_DIR) {
        let unit = rest.split('/').next().unwrap_or(rest);
        let unit = unit.strip_suffix(".d").unwrap_or(unit);
        if BOOT_ONCE.contains(&unit) {
            return none;
        }
        if unit.contains("@.") {
            // A template: its instances are the node's to restart.
            return (
                Effect::Restart(unit.to_string()),
                "every instance".to_string(),
            );
        }
        return restart(unit);
    }
    if let Some(name) = path.strip_prefix("/etc/default/") {
        return restart(&format!("{name}.service"));
    }
    if let Some(name) = path
        .strip_prefix("/etc/redis/")
        .and_then(|f| f.strip_suffix(".conf"))
    {
        return restart(&format!("pigsty-redis@{name}.service"));
    }
    match path {
        "/etc/patroni/patroni.yml" if change == FileChange::Modified => patroni_effect(old, new),
        "/etc/patroni/patroni.yml" => reload("patroni.service"),
        "/etc/pgbouncer/pgbouncer.ini" => {
            let why = if change == FileChange::Modified && without_pools(old) == without_pools(new)
            {
                POOLS_ONLY.to_string()
            } else {
                String::new()
            };
            (Effect::Reload("pgbouncer.service".to_string()), why)
        }
        "/etc/pgbouncer/userlist.txt" | "/etc/pgbouncer/pgb_hba.conf" => {
            reload("pgbouncer.service")
        }
        "/etc/haproxy/haproxy.cfg" => reload("haproxy.service"),
        "/etc/keepalived/keepalived.conf" | "/usr/lib/pigsty/keepalived-conf" => {
            reload("keepalived.service")
        }
        "/etc/nginx/conf.d/pigsty.conf" | "/etc/pki/infra.crt" | "/etc/pki/infra.key" => {
            reload("nginx.service")
        }
        "/etc/prometheus/prometheus.yml" => reload("prometheus.service"),
        "/etc/prometheus/alertmanager.yml" => reload("prometheus-alertmanager.service"),
        "/etc/prometheus/blackbox.yml" => reload("prometheus-blackbox-exporter.service"),
        "/etc/chrony/chrony.conf" => restart("chrony.service"),
        "/etc/sysctl.d/90-pigsty.conf" => run("sysctl --system"),
        "/etc/udev/rules.d/90-pigsty-journal.rules" => run("udevadm control --reload"),
        "/etc/pigsty/node.json"
            if change == FileChange::Modified && same_but(old, new, false, false) =>
        {
            (
                Effect::None,
                "only the inventory file's name differs".to_string(),
            )
        }
        "/etc/pigsty/node.json"
            if change == FileChange::Modified && same_but(old, new, true, false) =>
        {
            (
                Effect::Sql,
                "only its database steps' descriptions differ".to_string(),
            )
        }
        "/etc/pigsty/node.json"
            if change == FileChange::Modified && same_but(old, new, true, true) =>
        {
            (
                Effect::Run(TUNE.to_string()),
                "only PostgreSQL's sizing differs".to_string(),
            )
        }
        "/etc/pigsty/node.json" => (Effect::Agent, String::new()),
        "/etc/hostname" | "/etc/timezone" | "/etc/pki/ca.crt" => (Effect::Reboot, String::new()),
        _ => effect_by_dir(path),
    }
}

fn effect_by_dir(path: &str) -> (Effect, String) {
    let dir = |d: &str| path.starts_with(d);
    let restart = |u: &str| (Effect::Restart(u.to_string()), String::new());
    if dir("/etc/pigsty/sql/") {
        (Effect::Sql, String::new())
    } else if dir("/etc/etcd/") {
        restart("etcd.service")
    } else if dir("/etc/minio/") {
        restart("minio.service")
    } else if dir("/pg/cert/") {
        // PostgreSQL and Patroni's REST API read their certificates again on a reload.
        (Effect::Reload("patroni.service".to_string()), String::new())
    } else if dir("/etc/grafana/") {
        restart("grafana-server.service")
    } else if dir("/etc/prometheus/") {
        (
            Effect::Reload("prometheus.service".to_string()),
            String::new(),
        )
    } else if dir("/etc/sysusers.d/") {
        (Effect::Run("systemd-sysusers".to_string()), String::new())
    } else if dir("/etc/tmpfiles.d/") {
        (
            Effect::Run("systemd-tmpfiles --create".to_string()),
            String::new(),
        )
    } else if dir("/etc/cron.d/")
        || path == "/etc/crontab"
        || dir("/etc/sudoers.d/")
        || dir("/etc/pgbackrest/")
        || dir("/pg/bin/")
        || dir("/usr/lib/pigsty/")
        || dir("/etc/postgresql-common/")
        || path == "/etc/hosts"
        || path == "/etc/resolv.conf"
        || path == "/etc/pigsty/admin_authorized_keys"
        || path == crate::plan::IDENTITY_PATH
    {
        (Effect::None, String::new())
    } else {
        // A file no rule knows (the network, anything new): only a boot is sure.
        (Effect::Reboot, String::new())
    }
}

/// Whether two node.json texts are the same but for the name of the inventory file
/// they were built from (a name, not a change: `diff --against` reads the old one
/// under the new name), the descriptions of the join steps that create database
/// objects (`create 10 role(s)`) when `steps` is set, and PostgreSQL's sizing when
/// `sizing` is set.
fn same_but(old: &[u8], new: &[u8], steps: bool, sizing: bool) -> bool {
    let read = |t: &[u8]| -> Option<serde_json::Value> {
        let mut v: serde_json::Value = serde_json::from_slice(t).ok()?;
        if let Some(p) = v.get_mut("pigsty").and_then(|p| p.as_object_mut()) {
            p.remove("inventory");
        }
        if sizing && let Some(pg) = v.get_mut("pg").and_then(|p| p.as_object_mut()) {
            pg.remove("sizing");
        }
        if !steps {
            return Some(v);
        }
        for step in v.get_mut("join")?.as_array_mut()? {
            let id = step.get("id").and_then(|i| i.as_str()).unwrap_or_default();
            if matches!(id, "pg-users" | "pg-databases")
                && let Some(action) = step.get_mut("action")
            {
                *action = serde_json::Value::Null;
            }
        }
        Some(v)
    };
    matches!((read(old), read(new)), (Some(a), Some(b)) if a == b)
}

/// pgbouncer.ini without its `[databases]` and `[users]` sections.
fn without_pools(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut keep = true;
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            keep = !matches!(t, "[databases]" | "[users]");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// PostgreSQL parameters whose new value takes a server restart (context
/// `postmaster` in PostgreSQL 15 to 18).
const POSTMASTER: &[&str] = &[
    "archive_mode",
    "autovacuum_worker_slots",
    "bonjour",
    "bonjour_name",
    "cluster_name",
    "commit_timestamp_buffers",
    "config_file",
    "data_directory",
    "data_sync_retry",
    "dynamic_shared_memory_type",
    "event_source",
    "external_pid_file",
    "hba_file",
    "hot_standby",
    "huge_page_size",
    "huge_pages",
    "ident_file",
    "io_max_combine_limit",
    "io_method",
    "io_workers",
    "jit_provider",
    "listen_addresses",
    "logging_collector",
    "max_active_replication_origins",
    "max_connections",
    "max_files_per_process",
    "max_locks_per_transaction",
    "max_logical_replication_workers",
    "max_notify_queue_pages",
    "max_pred_locks_per_transaction",
    "max_prepared_transactions",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "min_dynamic_shared_memory",
    "multixact_member_buffers",
    "multixact_offset_buffers",
    "notify_buffers",
    "old_snapshot_threshold",
    "port",
    "recovery_target",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_timeline",
    "recovery_target_xid",
    "reserved_connections",
    "serializable_buffers",
    "shared_buffers",
    "shared_memory_type",
    "shared_preload_libraries",
    "ssl_library",
    "subtransaction_buffers",
    "superuser_reserved_connections",
    "track_activity_query_size",
    "track_commit_timestamp",
    "transaction_buffers",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "wal_buffers",
    "wal_decode_buffer_size",
    "wal_level",
    "wal_log_hints",
];

/// The command that sizes PostgreSQL for the machine into the copy of patroni.yml
/// Patroni reads (`/run/pigsty/patroni.yml`).
pub const TUNE: &str = "pigsty agent tune";

/// What a changed patroni.yml needs: a reload; Patroni's cluster config patched when
/// its `bootstrap` section differs (Patroni reads that only when the cluster is
/// made); a restart when a parameter that needs one differs, in either place.
fn patroni_effect(old: &[u8], new: &[u8]) -> (Effect, String) {
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let changed = |section: &str, indent: usize| -> Vec<String> {
        let (a, b) = (
            parameters(&old, section, indent),
            parameters(&new, section, indent),
        );
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| k.to_string())
            .collect()
    };
    let mut keys = changed("postgresql:", 2);
    let dcs = section(&old, "bootstrap:") != section(&new, "bootstrap:");
    keys.extend(changed("bootstrap:", 6));
    let restart: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| POSTMASTER.contains(k))
        .collect();
    let mut why = Vec::new();
    if dcs {
        why.push(DCS_DIFFERS.to_string());
    }
    if !restart.is_empty() {
        why.push(format!("{} needs a restart", restart.join(", ")));
        return (
            Effect::Restart("postgresql (through Patroni)".to_string()),
            why.join("; "),
        );
    }
    if dcs {
        return (Effect::ClusterConfig, why.join("; "));
    }
    (Effect::Reload("patroni.service".to_string()), String::new())
}

const DCS_DIFFERS: &str =
    "its bootstrap.dcs differs, which Patroni reads only when the cluster is made";

/// Whether the node's change includes Patroni's cluster-wide configuration.
fn patches_cluster(d: &NodeDiff) -> bool {
    patches_cluster_files(&d.files)
}

/// Whether the files' change includes Patroni's cluster-wide configuration.
pub fn patches_cluster_files(files: &[FileDiff]) -> bool {
    files.iter().any(|f| {
        f.path == "/etc/patroni/patroni.yml"
            && (f.effect == Effect::ClusterConfig || f.why.contains(DCS_DIFFERS))
    })
}

/// The `bootstrap.dcs` section of a rendered patroni.yml as a document of its own
/// (what `patronictl edit-config --replace` takes): the lines under `  dcs:`, four
/// spaces less indented.
pub fn dcs_section(patroni_yml: &str) -> Option<String> {
    let lines = section(patroni_yml, "bootstrap:");
    let start = lines.iter().position(|l| l.trim_end() == "  dcs:")?;
    let mut out = String::new();
    for line in &lines[start + 1..] {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        match line.strip_prefix("    ") {
            Some(rest) => {
                out.push_str(rest);
                out.push('\n');
            }
            None => break,
        }
    }
    Some(out)
}

/// The lines of a top-level section of a YAML text (its key line included).
fn section<'t>(text: &'t str, key: &str) -> Vec<&'t str> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
            inside = line.starts_with(key);
        }
        if inside {
            out.push(line);
        }
    }
    out
}

/// The `parameters:` block under a top-level section of a rendered patroni.yml
/// (`postgresql:` two spaces in, `bootstrap:` → `dcs:` → `postgresql:` six): one
/// `"key": "value"` line each (comments dropped).
fn parameters(text: &str, top: &str, indent: usize) -> BTreeMap<String, String> {
    let head = format!("{}parameters:", " ".repeat(indent));
    let item_indent = " ".repeat(indent + 2);
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in section(text, top) {
        if line.trim_end() == head {
            inside = true;
            continue;
        }
        if inside {
            match line.strip_prefix(item_indent.as_str()) {
                Some(item) if !item.starts_with(' ') => {
                    let item = item.split("  #").next().unwrap_or(item);
                    if let Some((k, v)) = item.split_once(':') {
                        let unquote = |s: &str| s.trim().trim_matches('"').to_string();
                        out.insert(unquote(k), unquote(v));
                    }
                }
                _ => inside = false,
            }
        }
    }
    out
}

/// A changed node's diff beside its node in the new fleet.
type Pair<'a> = (&'a NodeDiff, &'a Node);

/// The rollout's order, one node at a time: new nodes are provisioned first (the
/// others' changes name them); then members of etcd or MinIO that run no PostgreSQL
/// (one at a time keeps quorum); then each PostgreSQL cluster: replicas one by one,
/// a switchover when the primary restarts or reboots, then the former primary (for a
/// change of database objects only, the primary first: its SQL makes what its peers'
/// pgbouncer will list); then every other node (infra, redis); gone nodes last.
pub fn order(nodes: &[NodeDiff], new: &[Side]) -> Vec<Step> {
    let by_name: BTreeMap<&str, &Node> = new
        .iter()
        .map(|s| (s.node.nodename.as_str(), s.node))
        .collect();
    let mut steps = Vec::new();
    for d in nodes.iter().filter(|d| d.status == Status::New) {
        steps.push(Step {
            node: d.nodename.clone(),
            what: "provision: build its image and boot it; its agent joins it".to_string(),
            kind: StepKind::Provision,
            lane: "new".to_string(),
        });
    }
    let changed: Vec<Pair> = nodes
        .iter()
        .filter(|d| d.status == Status::Changed)
        .filter_map(|d| by_name.get(d.nodename.as_str()).map(|n| (d, *n)))
        .collect();
    let update = |d: &NodeDiff, lane: &str| Step {
        node: d.nodename.clone(),
        what: format!(
            "{}: {}",
            d.weight.map_or("", Weight::as_str),
            d.actions.join("; ")
        ),
        kind: StepKind::Update {
            weight: d.weight.unwrap_or(Weight::Image),
        },
        lane: lane.to_string(),
    };
    // Members of etcd or MinIO without PostgreSQL, by cluster and seq.
    let mut dcs: Vec<Pair> = changed
        .iter()
        .copied()
        .filter(|(_, n)| n.pg.is_none() && (n.etcd.is_some() || n.minio.is_some()))
        .collect();
    dcs.sort_by_key(|(_, n)| {
        (
            n.etcd.as_ref().map(|e| (e.cluster.clone(), e.seq)),
            n.minio.as_ref().map(|m| (m.cluster.clone(), m.seq)),
        )
    });
    steps.extend(dcs.iter().map(|(d, _)| update(d, "dcs")));
    // PostgreSQL clusters, by name.
    let mut clusters: BTreeMap<&str, Vec<Pair>> = BTreeMap::new();
    for &(d, n) in &changed {
        if let Some(pg) = &n.pg {
            clusters
                .entry(pg.cluster.as_str())
                .or_default()
                .push((d, n));
        }
    }
    for (cluster, mut members) in clusters {
        let lane = format!("pg:{cluster}");
        members.sort_by_key(|(_, n)| n.pg.as_ref().map(|p| p.seq));
        let heaviest = members.iter().filter_map(|(d, _)| d.weight).max();
        let is_primary = |n: &Node| n.pg.as_ref().is_some_and(|p| p.role == PgRole::Primary);
        let (primary, replicas): (Vec<Pair>, Vec<Pair>) =
            members.iter().copied().partition(|(_, n)| is_primary(n));
        if let Some((d, _)) = members.iter().find(|(d, _)| patches_cluster(d)) {
            let primary = members
                .iter()
                .find(|(_, n)| is_primary(n))
                .map_or(d.nodename.as_str(), |(d, _)| d.nodename.as_str());
            steps.push(Step {
                node: primary.to_string(),
                what: format!(
                    "cluster config: replace {cluster}'s Patroni configuration with the new \
                     bootstrap.dcs (patronictl edit-config), before its members restart"
                ),
                kind: StepKind::ClusterConfig {
                    cluster: cluster.to_string(),
                },
                lane: lane.clone(),
            });
        }
        if heaviest == Some(Weight::Database) {
            steps.extend(
                primary
                    .iter()
                    .chain(replicas.iter())
                    .map(|(d, _)| update(d, &lane)),
            );
            continue;
        }
        steps.extend(replicas.iter().map(|(d, _)| update(d, &lane)));
        for (d, n) in primary {
            if stops_postgres(d) {
                match switchover_target(n, new) {
                    Some(target) => steps.push(Step {
                        node: d.nodename.clone(),
                        what: format!(
                            "switchover: {cluster}'s primary moves to {target} (Patroni), \
                             then {} is updated and comes back as a replica",
                            d.nodename
                        ),
                        kind: StepKind::Switchover {
                            cluster: cluster.to_string(),
                            to: target,
                        },
                        lane: lane.clone(),
                    }),
                    None => steps.push(Step {
                        node: d.nodename.clone(),
                        what: format!(
                            "in place: {cluster} has no replica to switch over to, \
                             so it is down while {} restarts",
                            d.nodename
                        ),
                        kind: StepKind::InPlace {
                            cluster: cluster.to_string(),
                        },
                        lane: lane.clone(),
                    }),
                }
            }
            steps.push(update(d, &lane));
        }
    }
    // Everything else: infra, redis, plain nodes.
    let mut rest: Vec<Pair> = changed
        .iter()
        .copied()
        .filter(|(_, n)| n.pg.is_none() && n.etcd.is_none() && n.minio.is_none())
        .collect();
    rest.sort_by_key(|(_, n)| (!n.modules.contains(&Module::Infra), n.nodename.clone()));
    steps.extend(
        rest.iter()
            .map(|(d, _)| update(d, &format!("node:{}", d.nodename))),
    );
    for d in nodes.iter().filter(|d| d.status == Status::Gone) {
        steps.push(Step {
            node: d.nodename.clone(),
            what: "retire by hand (left running)".to_string(),
            kind: StepKind::Retire,
            lane: "gone".to_string(),
        });
    }
    steps
}

/// Whether the node's change stops PostgreSQL: a reboot, or a restart of Patroni or
/// of the server.
fn stops_postgres(d: &NodeDiff) -> bool {
    d.weight == Some(Weight::Image)
        || d.files.iter().any(|f| {
            matches!(&f.effect, Effect::Restart(u)
                if u == "patroni.service" || u.starts_with("postgresql"))
        })
}

/// The replica a switchover hands the primary to: the cluster's first member by seq
/// that may become primary (a replica, not offline, delayed or a standby leader).
fn switchover_target(primary: &Node, fleet: &[Side]) -> Option<String> {
    let pg = primary.pg.as_ref()?;
    fleet
        .iter()
        .filter_map(|s| s.node.pg.as_ref().map(|p| (p, s.node)))
        .filter(|(p, n)| p.cluster == pg.cluster && p.role == PgRole::Replica && n.ip != primary.ip)
        .min_by_key(|(p, _)| p.seq)
        .map(|(p, _)| p.name.clone())
}

/// How a node's running image compares with the inventory's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Running {
    /// It runs the image the inventory compiles to.
    Same,
    /// It runs another.
    Differs,
    /// It reported no image digest (not booted yet, or an image older than reports).
    Unreported,
    /// It reports, but the inventory has no such node.
    NotInInventory,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunningRow {
    pub nodename: String,
    pub ip: String,
    pub state: Running,
    /// The plan digest its image reports.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub running: String,
    /// The plan digest the inventory compiles to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub inventory: String,
}

/// Each node of the inventory beside the plan digest it reports running
/// (`reported`: nodename → digest, empty when it reported none), then the reports of
/// nodes the inventory lacks.
pub fn running(new: &[Side], reported: &BTreeMap<String, String>) -> Vec<RunningRow> {
    let mut rows: Vec<RunningRow> = new
        .iter()
        .map(|s| {
            let want = &s.compiled.plan.digest;
            let got = reported.get(&s.node.nodename).cloned().unwrap_or_default();
            let state = if got.is_empty() {
                Running::Unreported
            } else if &got == want {
                Running::Same
            } else {
                Running::Differs
            };
            RunningRow {
                nodename: s.node.nodename.clone(),
                ip: s.node.ip.to_string(),
                state,
                running: got,
                inventory: want.clone(),
            }
        })
        .collect();
    for (name, digest) in reported {
        if !new.iter().any(|s| &s.node.nodename == name) {
            rows.push(RunningRow {
                nodename: name.clone(),
                ip: String::new(),
                state: Running::NotInInventory,
                running: digest.clone(),
                inventory: String::new(),
            });
        }
    }
    rows
}

/// The text `pigsty diff` prints without `--against`.
pub fn describe_running(rows: &[RunningRow]) -> String {
    let short = |d: &str| d.get(..12).unwrap_or(d).to_string();
    let mut out = format!(
        "{:<16} {:<15} {:<16} {:<12}  {}\n",
        "NODE", "IP", "STATE", "RUNNING", "INVENTORY"
    );
    for r in rows {
        let state = match r.state {
            Running::Same => "same",
            Running::Differs => "differs",
            Running::Unreported => "unreported",
            Running::NotInInventory => "not-in-inventory",
        };
        out.push_str(&format!(
            "{:<16} {:<15} {:<16} {:<12}  {}\n",
            r.nodename,
            r.ip,
            state,
            short(&r.running),
            short(&r.inventory)
        ));
    }
    let count = |s: Running| rows.iter().filter(|r| r.state == s).count();
    out.push_str(&format!(
        "\n{} differ, {} unreported, {} the same{}\n",
        count(Running::Differs),
        count(Running::Unreported),
        count(Running::Same),
        if count(Running::Differs) > 0 {
            "; what changes on each and the order: pigsty rollout --dry-run (asks each node), \
             or pigsty diff --against <the inventory they were built from> (offline)"
        } else {
            ""
        }
    ));
    out
}

/// The text `pigsty diff` prints.
pub fn describe(d: &FleetDiff) -> String {
    let mut out = String::new();
    if d.is_empty() {
        out.push_str(&format!(
            "no change against {}: {} node(s) the same\n",
            d.against, d.unchanged
        ));
        return out;
    }
    for n in &d.nodes {
        let label = match (n.status, n.weight) {
            (Status::Changed, Some(w)) => w.as_str(),
            (Status::New, _) => "new",
            (Status::Gone, _) => "gone",
            (Status::Changed, None) => "changed",
        };
        out.push_str(&format!(
            "{:<16} {:<15} {:<9} {}\n",
            n.nodename, n.ip, label, n.reason
        ));
        if !n.packages_added.is_empty() {
            out.push_str(&format!("    + packages {}\n", n.packages_added.join(" ")));
        }
        if !n.packages_removed.is_empty() {
            out.push_str(&format!(
                "    - packages {}\n",
                n.packages_removed.join(" ")
            ));
        }
        for f in &n.files {
            let why = if f.why.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.why)
            };
            out.push_str(&format!(
                "    {} {:<52} {}{why}\n",
                f.change.sign(),
                f.path,
                f.effect
            ));
        }
    }
    let count = |s: Status| d.nodes.iter().filter(|n| n.status == s).count();
    out.push_str(&format!(
        "\n{} changed, {} new, {} gone, {} the same (against {})\n",
        count(Status::Changed),
        count(Status::New),
        count(Status::Gone),
        d.unchanged,
        d.against
    ));
    out.push_str("\nrollout, one node at a time:\n");
    for (i, s) in d.rollout.iter().enumerate() {
        out.push_str(&format!("  {:>3}  {:<16} {}\n", i + 1, s.node, s.what));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_named_after_another_inventory_file_is_no_change() {
        let doc = |file: &str, roles: u32| {
            format!(
                r#"{{"pigsty":{{"version":"0.1.0","inventory":"{file}"}},"join":[{{"id":"pg-users","action":"create {roles} role(s)"}}]}}"#
            )
        };
        let effect = |a: String, b: String| {
            effect_of(
                "/etc/pigsty/node.json",
                FileChange::Modified,
                a.as_bytes(),
                b.as_bytes(),
            )
            .0
        };
        assert_eq!(effect(doc("a.yml", 9), doc("b.yml", 9)), Effect::None);
        assert_eq!(effect(doc("a.yml", 9), doc("b.yml", 10)), Effect::Sql);
        // A node whose files differ only so (a user added, the inventory renamed) is
        // a database change.
        let files = [
            FileDiff {
                path: "/etc/pigsty/node.json".into(),
                change: FileChange::Modified,
                effect: Effect::None,
                why: String::new(),
            },
            FileDiff {
                path: "/etc/pigsty/sql/10-roles.sql".into(),
                change: FileChange::Modified,
                effect: Effect::Sql,
                why: String::new(),
            },
        ];
        assert_eq!(weigh(&files, Vec::new()).0, Weight::Database);
    }

    #[test]
    fn the_dcs_section_is_a_document_of_its_own() {
        let text = "scope: x\nbootstrap:\n  method: initdb\n  dcs:\n    ttl: 30\n    # a comment\n    postgresql:\n      parameters:\n        \"max_connections\": \"9\"\n  initdb:\n    - encoding: UTF8\npostgresql:\n  listen: x\n";
        assert_eq!(
            dcs_section(text).unwrap(),
            "ttl: 30\npostgresql:\n  parameters:\n    \"max_connections\": \"9\"\n"
        );
        assert_eq!(dcs_section("postgresql:\n  listen: x\n"), None);
    }

    #[test]
    fn patroni_parameters_are_read_from_their_own_block() {
        let text = "bootstrap:\n  dcs:\n    postgresql:\n      parameters:\n        \"max_connections\": \"9\"\n      use_slots: true\n\
postgresql:\n  listen: x\n  parameters:\n    \"shared_buffers\": \"1GB\"  # sized at boot\n    \"work_mem\": \"4MB\"\n  pg_hba:\n    - host all\n";
        let p = parameters(text, "postgresql:", 2);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p["shared_buffers"], "1GB");
        assert_eq!(p["work_mem"], "4MB");
        let p = parameters(text, "bootstrap:", 6);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p["max_connections"], "9");
    }

    #[test]
    fn a_cluster_wide_setting_is_patched_and_a_postmaster_one_restarts() {
        let dcs = |wal: &str, conns: &str| {
            format!(
                "bootstrap:\n  dcs:\n    ttl: 30\n    postgresql:\n      parameters:\n        \"max_connections\": \"{conns}\"\n\
postgresql:\n  parameters:\n    \"wal_level\": \"{wal}\"\n"
            )
        };
        let path = "/etc/patroni/patroni.yml";
        let e = |a: String, b: String| {
            effect_of(path, FileChange::Modified, a.as_bytes(), b.as_bytes())
        };
        let (effect, why) = e(dcs("replica", "100"), dcs("replica", "200"));
        assert_eq!(
            effect,
            Effect::Restart("postgresql (through Patroni)".into())
        );
        assert!(
            why.contains("bootstrap.dcs") && why.contains("max_connections needs a restart"),
            "{why}"
        );
        let (effect, _) = e(
            dcs("replica", "100"),
            dcs("replica", "100").replace("ttl: 30", "ttl: 40"),
        );
        assert_eq!(effect, Effect::ClusterConfig);
        let (effect, why) = e(dcs("replica", "100"), dcs("logical", "100"));
        assert_eq!(
            (effect, why.as_str()),
            (
                Effect::Restart("postgresql (through Patroni)".into()),
                "wal_level needs a restart"
            )
        );
    }

    #[test]
    fn a_postmaster_parameter_asks_for_a_restart_and_others_for_a_reload() {
        let a = b"postgresql:\n  parameters:\n    \"shared_buffers\": \"1GB\"\n    \"work_mem\": \"4MB\"\n";
        let b = b"postgresql:\n  parameters:\n    \"shared_buffers\": \"2GB\"\n    \"work_mem\": \"8MB\"\n";
        let c = b"postgresql:\n  parameters:\n    \"shared_buffers\": \"1GB\"\n    \"work_mem\": \"8MB\"\n";
        let path = "/etc/patroni/patroni.yml";
        let (e, why) = effect_of(path, FileChange::Modified, a, b);
        assert_eq!(e, Effect::Restart("postgresql (through Patroni)".into()));
        assert_eq!(why, "shared_buffers needs a restart");
        let (e, _) = effect_of(path, FileChange::Modified, a, c);
        assert_eq!(e, Effect::Reload("patroni.service".into()));
    }

    #[test]
    fn pgbouncer_ini_is_a_database_change_only_when_its_pools_alone_differ() {
        let a = b"[databases]\na = host=x\n[users]\nu = pool_mode=session\n[pgbouncer]\nlisten_port = 6432\n";
        let b = b"[databases]\na = host=x\nb = host=x\n[users]\nu = pool_mode=session\n[pgbouncer]\nlisten_port = 6432\n";
        let c = b"[databases]\na = host=x\n[users]\nu = pool_mode=session\n[pgbouncer]\nlisten_port = 6433\n";
        let path = "/etc/pgbouncer/pgbouncer.ini";
        let (_, why) = effect_of(path, FileChange::Modified, a, b);
        assert_eq!(why, POOLS_ONLY);
        let (e, why) = effect_of(path, FileChange::Modified, a, c);
        assert_eq!(
            (e, why.as_str()),
            (Effect::Reload("pgbouncer.service".into()), "")
        );
    }

    #[test]
    fn paths_map_to_what_takes_them_in() {
        let e = |p: &str| effect_of(p, FileChange::Modified, b"", b"x").0;
        assert_eq!(
            e("/etc/haproxy/haproxy.cfg"),
            Effect::Reload("haproxy.service".into())
        );
        assert_eq!(
            e("/etc/default/etcd"),
            Effect::Restart("etcd.service".into())
        );
        assert_eq!(
            e("/etc/systemd/system/etcd.service.d/pigsty.conf"),
            Effect::Restart("etcd.service".into())
        );
        assert_eq!(
            e("/etc/systemd/system/minio.service"),
            Effect::Restart("minio.service".into())
        );
        assert_eq!(e("/etc/systemd/system/pigsty-tune.service"), Effect::None);
        assert_eq!(
            e("/etc/redis/redis-1.conf"),
            Effect::Restart("pigsty-redis@redis-1.service".into())
        );
        assert_eq!(e("/etc/pigsty/sql/10-roles.sql"), Effect::Sql);
        assert_eq!(e("/etc/pigsty/node.json"), Effect::Agent);
        let step = |n: u32| {
            format!(
                r#"{{"node":{{"ip":"10.0.0.1"}},"join":[{{"id":"pg-users","action":"create {n} role(s)"}},{{"id":"patroni","action":"start {n}"}}]}}"#
            )
        };
        let (a, b) = (step(1), step(2));
        // Only the role count differs... and so does patroni's action: not SQL.
        assert_eq!(
            effect_of(
                "/etc/pigsty/node.json",
                FileChange::Modified,
                a.as_bytes(),
                b.as_bytes()
            )
            .0,
            Effect::Agent
        );
        let c = a.replace("start 1", "start 2");
        assert_eq!(
            effect_of(
                "/etc/pigsty/node.json",
                FileChange::Modified,
                c.as_bytes(),
                b.as_bytes()
            )
            .0,
            Effect::Sql
        );
        assert_eq!(e("/etc/hostname"), Effect::Reboot);
        assert_eq!(e("/etc/systemd/network/10-pigsty.network"), Effect::Reboot);
        assert_eq!(e("/etc/something/new.conf"), Effect::Reboot);
        assert_eq!(
            e("/etc/sysctl.d/90-pigsty.conf"),
            Effect::Run("sysctl --system".into())
        );
        assert_eq!(e("/pg/bin/pg-backup"), Effect::None);
    }
}
