//! The agent's progress on disk: `<root>/var/lib/pigsty/state.json` (rewritten
//! atomically after every change) and the done marker `firstboot.done` (with the
//! bundle it was made for, on a node booted from an A/B slot).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub const STATE_DIR: &str = "var/lib/pigsty";

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    #[default]
    Pending,
    Running,
    Done,
    Failed,
}

impl StepStatus {
    /// The name the state file uses (`running`).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct StepState {
    pub status: StepStatus,
    /// Runs of this step so far (a resumed step counts again).
    pub attempts: u32,
    pub started_at: u64,
    pub finished_at: u64,
    /// What the step did or found (`joined as learner, promoted`).
    pub detail: String,
    pub error: String,
}

impl StepState {
    /// What to show of the step: its error if it failed, else its detail.
    pub fn note(&self) -> &str {
        if self.error.is_empty() {
            &self.detail
        } else {
            &self.error
        }
    }
}

/// The whole state file; what `agent status --json` prints and etcd holds under
/// `/pigsty/nodes/<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct State {
    pub node: String,
    /// Step ids in run order.
    pub order: Vec<String>,
    pub steps: BTreeMap<String, StepState>,
    /// The step running now or that failed last.
    pub current: String,
    pub done: bool,
    pub updated_at: u64,
    /// On a node booted from an A/B slot: the bundle this run joined with, and what
    /// the slots hold (the running one and the fallback).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bundle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<super::update::Slots>,
    /// The digest of the plan the running image was built from (its
    /// /etc/pigsty/image.json), which `pigsty diff` compares with the inventory's.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub plan_digest: String,
    /// The node's SSH host public keys (`ssh-ed25519 AAAA...`), made at its first
    /// boot: reported where only the fleet's certificates write, so an admin's SSH
    /// client can check a node against them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_keys: Vec<String>,
}

/// The SSH host public keys under a node's root, sorted (none before they are made).
pub fn host_keys(root: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(root.join("etc/ssh")) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = dir
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("ssh_host_") && name.ends_with("_key.pub")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| {
            // Algorithm and key only: the comment is the host that made it.
            let mut words = t.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .collect();
    keys.sort();
    keys
}

impl State {
    pub fn step(&mut self, id: &str) -> &mut StepState {
        self.steps.entry(id.to_string()).or_default()
    }

    /// The step running now (or that failed last), as recorded.
    pub fn current_step(&self) -> StepState {
        self.steps.get(&self.current).cloned().unwrap_or_default()
    }

    pub fn is_done(&self, id: &str) -> bool {
        self.steps
            .get(id)
            .is_some_and(|s| s.status == StepStatus::Done)
    }

    /// One line per step: `etcd done joined ...`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for id in &self.order {
            let s = self.steps.get(id).cloned().unwrap_or_default();
            let (status, note) = (s.status.as_str(), s.note());
            out.push_str(&format!("{id:<14} {status:<8} {note}\n"));
        }
        out
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The state directory and its files under a root.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            dir: root.join(STATE_DIR),
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn done_marker(&self) -> PathBuf {
        self.dir.join("firstboot.done")
    }

    /// The saved state, or an empty one when there is none yet.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, state: &mut State) -> anyhow::Result<()> {
        state.updated_at = now();
        let mut bytes = serde_json::to_vec_pretty(state).context("encoding the state")?;
        bytes.push(b'\n');
        write_atomic(&self.state_path(), &bytes, 0o644)
    }

    /// Whether the join finished, for this boot's bundle when the node boots from
    /// A/B slots: a new bundle (an update, or a fallback to the other slot) joins
    /// again, every step finding what the earlier runs made.
    pub fn is_finished(&self, bundle: Option<&str>) -> bool {
        match (std::fs::read_to_string(self.done_marker()), bundle) {
            (Err(_), _) => false,
            (Ok(_), None) => true,
            (Ok(text), Some(b)) => text.lines().nth(1) == Some(b),
        }
    }

    /// The done marker: when, and for which bundle.
    pub fn mark_finished(&self, bundle: Option<&str>) -> anyhow::Result<()> {
        write_atomic(
            &self.done_marker(),
            format!("{}\n{}\n", now(), bundle.unwrap_or_default()).as_bytes(),
            0o644,
        )
    }
}

/// Write `bytes` to `path` so a reader (or a power cut) sees the old file or the new
/// one, never half of it: a temporary sibling, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_marker_gates() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::new(root.path());
        assert_eq!(store.load().unwrap(), State::default());
        let mut st = State {
            node: "pg-test-1".into(),
            order: vec!["etcd".into()],
            ..State::default()
        };
        st.step("etcd").status = StepStatus::Done;
        store.save(&mut st).unwrap();
        let back = store.load().unwrap();
        assert!(back.is_done("etcd"));
        assert!(back.summary().starts_with("etcd"));
        assert!(!store.is_finished(None));
        store.mark_finished(None).unwrap();
        assert!(store.is_finished(None));
        // On an A/B node the marker holds for its bundle only.
        store.mark_finished(Some("b1")).unwrap();
        assert!(store.is_finished(Some("b1")));
        assert!(!store.is_finished(Some("b2")));
        // No temporary file is left beside the state.
        let names: Vec<_> = std::fs::read_dir(root.path().join(STATE_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn unknown_and_missing_fields_are_defaulted() {
        let st: State = serde_json::from_str(r#"{"node":"x","extra":1}"#).unwrap();
        assert_eq!(st.node, "x");
        assert!(st.steps.is_empty());
    }
}
