//! `pigsty agent apply`: a new node bundle taken in by a running node, without a
//! reboot, when every file that differs is one a running node can take in (what
//! `pigsty diff` weighs `database` or `config`). Anything else (a file added or
//! removed, a unit link, the hostname, the network) needs a boot: the A/B update.
//!
//! 1. The new bundle is read and checked; the running one (the slot partition holding
//!    the digest this node runs) is compared with it file by file.
//! 2. The slot that is not running gets the running root and the new bundle, on
//!    trial, as `agent update` writes it: the next boot, whenever it comes, boots
//!    the files the node runs from now on, and falls back if that boot fails.
//! 3. The new bundle is unpacked into a tmpfs of its own and each changed file is
//!    bind-mounted over its path of the read-only root (an earlier apply's mount
//!    there is replaced).
//! 4. What takes each file in runs: `systemctl daemon-reload` for unit files,
//!    `pigsty agent tune` before Patroni reads its sized copy, Patroni's cluster
//!    configuration (`patronictl edit-config --replace` with the new
//!    `bootstrap.dcs`, which Patroni reads only when a cluster is made), reloads,
//!    commands (`sysctl --system`), restarts (PostgreSQL through `patronictl
//!    restart`).
//! 5. The join runs again under the new bundle's digest: every step is idempotent,
//!    and the primary's database steps apply the new SQL; the state and the node's
//!    etcd record then name the new bundle and plan.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;

use super::service::ServiceManager;
use super::update::{self, Disk, Source};
use super::{Options, State};
use crate::bundle::{self, Boot};
use crate::diff::{Effect, FileChange, FileDiff};
use crate::render::RenderedFile;

/// Where the applied bundles are unpacked (below the node's root).
pub const LIVE_DIR: &str = "run/pigsty/live";

/// What `agent apply` is asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub bundle: Source,
    pub bundle_sha256: Option<String>,
    /// Boots the slot written for the next boot gets before systemd-boot gives up.
    pub tries: u32,
    pub trial_secs: u64,
    /// Only compare: say what the bundle changes and what would take it in.
    pub check: bool,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The bundle the node runs now.
    pub bundle: String,
    pub files: Vec<FileDiff>,
    /// What ran, in order.
    pub actions: Vec<String>,
    /// The slot written for the next boot (none when nothing changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<char>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// Only a boot takes the bundle in (`--check`; apply itself refuses it).
    pub needs_boot: bool,
    /// The bundle the node ran before.
    pub was: String,
}

/// One entry of a bundle tar: a regular file, or something else described
/// (`symlink to ...`, `directory 0755 0:0`, `whiteout`).
#[derive(Debug, Clone, PartialEq)]
enum Item {
    File(RenderedFile),
    Other(String),
}

/// The entries of a bundle tar by absolute path.
fn items(tar: &[u8]) -> anyhow::Result<BTreeMap<String, Item>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = BTreeMap::new();
    for entry in archive.entries().context("reading the bundle")? {
        let mut entry = entry.context("reading the bundle")?;
        let path = entry.path().context("a bundle path")?;
        let path = format!(
            "/{}",
            path.to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
        );
        let h = entry.header();
        let (mode, uid, gid) = (
            h.mode().unwrap_or(0) & 0o7777,
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
        );
        let item = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut content = Vec::new();
                entry
                    .read_to_end(&mut content)
                    .with_context(|| format!("reading {path} from the bundle"))?;
                Item::File(RenderedFile {
                    path: path.clone(),
                    mode,
                    owner: format!("{uid}:{gid}"),
                    content,
                })
            }
            tar::EntryType::Symlink | tar::EntryType::Link => Item::Other(format!(
                "link to {}",
                entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default()
            )),
            tar::EntryType::Directory => Item::Other(format!("directory {mode:04o} {uid}:{gid}")),
            other => Item::Other(format!("{other:?} {mode:04o} {uid}:{gid}")),
        };
        out.insert(path, item);
    }
    Ok(out)
}

/// The files that differ between two bundles, each with what takes it in; what is
/// not a regular file (a unit link, a whiteout, a directory) only a boot takes in.
pub fn compare(old: &[u8], new: &[u8]) -> anyhow::Result<Vec<FileDiff>> {
    let (old, new) = (items(old)?, items(new)?);
    let files = |m: &BTreeMap<String, Item>| -> Vec<RenderedFile> {
        m.values()
            .filter_map(|i| match i {
                Item::File(f) => Some(f.clone()),
                Item::Other(_) => None,
            })
            .collect()
    };
    let mut out = crate::diff::file_diffs(&files(&old), &files(&new));
    let paths: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let (a, b) = (old.get(path), new.get(path));
        let other = |i: Option<&Item>| matches!(i, Some(Item::Other(_)));
        if a == b || !(other(a) || other(b)) {
            continue;
        }
        let change = match (a, b) {
            (None, _) => FileChange::Added,
            (_, None) => FileChange::Removed,
            _ => FileChange::Modified,
        };
        out.retain(|f| &f.path != path);
        out.push(FileDiff {
            path: path.clone(),
            change,
            effect: Effect::Reboot,
            why: "not a regular file (a unit link, a whiteout or a directory)".to_string(),
        });
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(out)
}

/// Take in a new bundle without a reboot (see the module's documentation).
pub fn apply(
    opts: &Options,
    services: &dyn ServiceManager,
    disk: &Disk,
    cmdline: &str,
    req: &Request,
    http: &crate::http::Client,
) -> anyhow::Result<Applied> {
    let boot = update::booted_slot(cmdline)?;
    let store = super::state::Store::new(&opts.root);
    let state = store.load()?;
    let current = if state.bundle.is_empty() {
        boot.bundle.clone()
    } else {
        state.bundle.clone()
    };
    let tar = update::read_bundle(&req.bundle, http)?;
    let sha = bundle::digest(&tar);
    if let Some(want) = &req.bundle_sha256
        && !want.eq_ignore_ascii_case(&sha)
    {
        bail!(
            "the bundle {} is sha256 {sha}, not {want}",
            req.bundle.describe()
        );
    }
    if sha == current {
        return Ok(Applied {
            bundle: sha,
            files: Vec::new(),
            actions: vec!["nothing: the node runs this bundle".to_string()],
            slot: None,
            state: None,
            needs_boot: false,
            was: current,
        });
    }
    let running = running_bundle(disk, &boot, &current)?;
    let files = compare(&running, &tar)?;
    let boot_only: Vec<String> = files
        .iter()
        .filter(|f| f.effect == Effect::Reboot)
        .map(|f| {
            let why = if f.why.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.why)
            };
            format!("{} {:?}{why}", f.path, f.change)
        })
        .collect();
    if req.check {
        let actions = if boot_only.is_empty() {
            vec!["would take it in without a boot".to_string()]
        } else {
            vec![format!("needs a boot: {}", boot_only.join(", "))]
        };
        return Ok(Applied {
            bundle: sha,
            files,
            actions,
            slot: None,
            state: None,
            needs_boot: !boot_only.is_empty(),
            was: current,
        });
    }
    if !boot_only.is_empty() {
        bail!(
            "this bundle needs a boot to be taken in: {}; use `pigsty agent update --bundle {} \
             --reboot`",
            boot_only.join(", "),
            req.bundle.describe()
        );
    }

    // 2. The next boot's slot: the running root, the new bundle, on trial.
    let outcome = update::update_with_bundle(
        disk,
        cmdline,
        &update::Request {
            root: None,
            root_sha256: None,
            bundle: req.bundle.clone(),
            bundle_sha256: Some(sha.clone()),
            tries: req.tries,
            trial_secs: req.trial_secs,
        },
        &tar,
        http,
    )
    .context("writing the next boot's slot")?;
    let mut actions = vec![format!(
        "slot {} written for the next boot ({}, on trial)",
        outcome.slot, outcome.entry
    )];

    // 3. The new files over the running ones.
    let live = opts.root.join(LIVE_DIR).join(&sha[..16]);
    bind_files(&opts.root, &live, &tar, &files)?;
    actions.push(format!(
        "{} file(s) bound from {}",
        files.len(),
        live.display()
    ));

    // 4. What takes them in.
    actions.extend(take_in(opts, services, &files)?);

    // 5. The join, again, under the new bundle.
    let mut again = opts.clone();
    again.bundle = Some(sha.clone());
    again.slots = update::slots(&disk.esp, &boot).ok();
    let state = super::firstboot(&again, services).context("the join under the new bundle")?;
    actions.push(format!(
        "join done again under bundle sha256:{}",
        &sha[..16]
    ));
    Ok(Applied {
        bundle: sha,
        files,
        actions,
        slot: Some(outcome.slot),
        state: Some(state),
        needs_boot: false,
        was: current,
    })
}

/// The bundle this node runs, from whichever slot's partition holds it (the running
/// slot's, or the other's after an earlier apply).
fn running_bundle(disk: &Disk, boot: &Boot, digest: &str) -> anyhow::Result<Vec<u8>> {
    let mut errors = Vec::new();
    for slot in [boot.slot, boot.other()] {
        match super::preinit::read_partition(&disk.bundle_part(slot), digest) {
            Ok(tar) => return Ok(tar),
            Err(e) => errors.push(format!("slot {slot}: {e:#}")),
        }
    }
    bail!(
        "the bundle this node runs (sha256:{digest}) is in neither slot: {}",
        errors.join("; ")
    )
}

/// Unpack `tar` into a tmpfs at `live` and bind each changed file over its path
/// under `root`; earlier applies' tmpfs are let go once nothing is bound from them.
fn bind_files(root: &Path, live: &Path, tar: &[u8], files: &[FileDiff]) -> anyhow::Result<()> {
    use rustix::mount::{MountFlags, UnmountFlags};
    if is_mount_point(live)? {
        rustix::mount::unmount(live, UnmountFlags::DETACH)
            .with_context(|| format!("unmounting {}", live.display()))?;
    }
    std::fs::create_dir_all(live).with_context(|| format!("creating {}", live.display()))?;
    rustix::mount::mount("tmpfs", live, "tmpfs", MountFlags::NOSUID, c"mode=0755")
        .with_context(|| format!("mounting a tmpfs on {}", live.display()))?;
    super::preinit::unpack(tar, live)?;
    for f in files {
        let rel = f.path.trim_start_matches('/');
        let (src, target) = (live.join(rel), root.join(rel));
        if is_mount_point(&target)? {
            rustix::mount::unmount(&target, UnmountFlags::DETACH)
                .with_context(|| format!("unmounting the earlier {}", target.display()))?;
        }
        rustix::mount::mount_bind(&src, &target)
            .with_context(|| format!("binding {} over {}", src.display(), target.display()))?;
    }
    // Earlier applies' trees: detached (what is bound from them stays until replaced).
    if let Some(parent) = live.parent() {
        for entry in std::fs::read_dir(parent)? {
            let dir = entry?.path();
            if dir != live && is_mount_point(&dir)? {
                rustix::mount::unmount(&dir, UnmountFlags::DETACH)
                    .with_context(|| format!("unmounting {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// Whether `path` is a mount point (of this thread's mount namespace: a test runs in
/// one of its own).
fn is_mount_point(path: &Path) -> anyhow::Result<bool> {
    let Ok(want) = path.canonicalize() else {
        return Ok(false);
    };
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .context("reading /proc/thread-self/mountinfo")?;
    Ok(info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|m| Path::new(&unescape(m)) == want)
    }))
}

/// A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Run what takes the changed files in, in order; returns what ran.
fn take_in(
    opts: &Options,
    services: &dyn ServiceManager,
    files: &[FileDiff],
) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    let effects: BTreeSet<&Effect> = files.iter().map(|f| &f.effect).collect();
    if files
        .iter()
        .any(|f| f.path.starts_with("/etc/systemd/system/"))
    {
        services.daemon_reload()?;
        done.push("systemctl daemon-reload".to_string());
    }
    if effects.iter().any(|e| crate::diff::patroni_reads(e)) {
        super::tune::tune(&opts.root, None).context("pigsty agent tune")?;
        done.push("pigsty agent tune".to_string());
    }
    // The cluster's configuration before any member restarts for it.
    if crate::diff::patches_cluster_files(files) {
        done.push(patch_cluster_config(opts)?);
    }
    for e in effects {
        match e {
            Effect::Reload(u) => {
                services.reload(u)?;
                done.push(e.to_string());
            }
            Effect::Run(c) if c == crate::diff::TUNE => {}
            Effect::Run(c) => {
                let mut words = c.split_whitespace();
                let program = words.next().context("an empty command")?;
                crate::sys::run(std::process::Command::new(program).args(words))?;
                done.push(e.to_string());
            }
            Effect::Restart(u) if u.starts_with("postgresql") => {
                done.push(restart_postgres(opts)?);
            }
            Effect::Restart(u) if u.contains("@.") => {
                done.push(format!("{u}: its instances restart at the next boot"));
            }
            Effect::Restart(u) => {
                services.restart(u)?;
                done.push(e.to_string());
            }
            // The join that follows: the primary's SQL, node.json's steps.
            Effect::Sql | Effect::Agent | Effect::None => {}
            Effect::ClusterConfig => {}
            Effect::Reboot => bail!("{e}: not something a running node takes in"),
        }
    }
    Ok(done)
}

/// The patroni.yml Patroni runs with: tune's sized copy, else the image's.
fn patroni_config(root: &Path) -> std::path::PathBuf {
    let sized = root.join(super::tune::PATRONI_RUN.trim_start_matches('/'));
    if sized.is_file() {
        sized
    } else {
        root.join("etc/patroni/patroni.yml")
    }
}

/// This member's PostgreSQL section of node.json, for a step that needs one.
fn pg_of(opts: &Options, what: &str) -> anyhow::Result<crate::plan::node_json::PgInfo> {
    crate::plan::node_json::NodeJson::load(&opts.root)?
        .pg
        .with_context(|| format!("{what} on a node without PostgreSQL"))
}

/// Patroni's cluster-wide configuration set to patroni.yml's `bootstrap.dcs`, which
/// Patroni itself reads only when the cluster is made: `patronictl edit-config
/// --replace` (the DCS takes it at once; members flag a restart a parameter needs).
pub fn patch_cluster_config(opts: &Options) -> anyhow::Result<String> {
    let pg = pg_of(opts, "Patroni's cluster configuration")?;
    let config = patroni_config(&opts.root);
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let dcs = crate::diff::dcs_section(&text)
        .with_context(|| format!("{} has no bootstrap.dcs", config.display()))?;
    let file = opts.root.join(super::state::STATE_DIR).join("dcs.yml");
    super::state::write_atomic(&file, dcs.as_bytes(), 0o600)?;
    crate::sys::run(
        std::process::Command::new("patronictl")
            .arg("-c")
            .arg(&config)
            .args(["edit-config", &pg.cluster, "--force", "--replace"])
            .arg(&file),
    )?;
    Ok(format!(
        "patronictl edit-config {} --replace (bootstrap.dcs)",
        pg.cluster
    ))
}

/// Restart this member's PostgreSQL through Patroni (which knows its state): the
/// restart `pg restart` does in Pigsty.
pub fn restart_postgres(opts: &Options) -> anyhow::Result<String> {
    let pg = pg_of(opts, "a PostgreSQL restart")?;
    let config = patroni_config(&opts.root);
    crate::sys::run(
        std::process::Command::new("patronictl")
            .arg("-c")
            .arg(&config)
            .args(["restart", &pg.cluster, &pg.name, "--force"]),
    )?;
    Ok(format!("patronictl restart {} {}", pg.cluster, pg.name))
}
