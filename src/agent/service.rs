//! Starting and stopping the node's services. The agent talks to a [`ServiceManager`]:
//! on a node, systemd ([`Systemd`]). The tests' manager, which runs each unit's
//! program as a child process on loopback, lives with the tests
//! (`tests/support/processes.rs`), so the shipped binary does not carry it.
//!
//! Environment overrides (etcd's `initial-cluster-state=existing` when joining) go to
//! `<root>/var/lib/pigsty/env/<unit>.env`, read after the unit's own EnvironmentFile
//! so they win over the image's `/etc/default/*`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use super::state::{STATE_DIR, write_atomic};
use crate::sys;

pub trait ServiceManager: Sync {
    /// Enable and start `unit`; a running unit is left as it is.
    fn start(&self, unit: &str) -> anyhow::Result<()>;
    fn stop(&self, unit: &str) -> anyhow::Result<()>;
    fn is_active(&self, unit: &str) -> anyhow::Result<bool>;
    /// Whether the unit ran and ended in failure (systemd's `failed`): it will not
    /// go on by itself.
    fn is_failed(&self, unit: &str) -> anyhow::Result<bool>;
    /// Environment for the unit's next start, over its shipped EnvironmentFile.
    fn set_env(&self, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()>;
    /// Have a running unit read its files again (a restart when it cannot reload);
    /// a unit that is not running is left so.
    fn reload(&self, unit: &str) -> anyhow::Result<()>;
    /// Restart a running unit; a unit that is not running is left so.
    fn restart(&self, unit: &str) -> anyhow::Result<()>;
    /// Read unit files again.
    fn daemon_reload(&self) -> anyhow::Result<()>;
}

/// The override file of a unit under a root.
pub fn env_path(root: &Path, unit: &str) -> PathBuf {
    root.join(STATE_DIR).join("env").join(format!("{unit}.env"))
}

/// Write the override file of a unit: read after its own EnvironmentFile.
pub fn write_env_file(root: &Path, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
    let mut text = String::from("# Written by pigsty agent firstboot.\n");
    for (k, v) in vars {
        text.push_str(&format!("{k}={}\n", quote_env(v)));
    }
    write_atomic(&env_path(root, unit), text.as_bytes(), 0o644)
}

fn quote_env(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Read a systemd EnvironmentFile / `/etc/default` file: `KEY=value` lines, comments,
/// optional double or single quotes.
pub fn read_env_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect())
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        return v[1..v.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
    }
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_string();
    }
    v.to_string()
}

/// systemd through `systemctl`.
#[derive(Debug, Clone)]
pub struct Systemd {
    pub root: PathBuf,
}

impl Systemd {
    fn systemctl(&self, args: &[&str]) -> anyhow::Result<()> {
        sys::run(Command::new("systemctl").args(args))?;
        Ok(())
    }
}

impl ServiceManager for Systemd {
    /// Enabled, so it comes back on every later boot; started now. `--no-reload`:
    /// the image already holds the unit, and a daemon-reload costs seconds on a
    /// small or emulated machine. SYSTEMCTL_SKIP_SYSV: the unit is native; without
    /// it systemctl also runs update-rc.d for the package's init.d script (pgbouncer,
    /// haproxy), a Perl run that took tens of seconds under emulation.
    fn start(&self, unit: &str) -> anyhow::Result<()> {
        // Recorded where a node booted from a slot keeps state: the image's
        // pigsty-enabled generator links it at every later boot. /etc is read-only
        // there, so `systemctl enable` is for a node not booted from a slot.
        let record = self.root.join(STATE_DIR).join("enabled").join(unit);
        write_atomic(&record, b"", 0o644)?;
        if !booted_from_slot() {
            sys::run(
                Command::new("systemctl")
                    .env("SYSTEMCTL_SKIP_SYSV", "1")
                    .args(["enable", "--no-reload", unit]),
            )?;
        }
        self.systemctl(&["start", unit])
    }

    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl(&["stop", unit])
    }

    fn reload(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl(&["try-reload-or-restart", unit])
    }

    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl(&["try-restart", unit])
    }

    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.systemctl(&["daemon-reload"])
    }

    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        exit_ok(Command::new("systemctl").args(["is-active", "--quiet", unit]))
    }

    fn is_failed(&self, unit: &str) -> anyhow::Result<bool> {
        exit_ok(Command::new("systemctl").args(["is-failed", "--quiet", unit]))
    }

    fn set_env(&self, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
        write_env_file(&self.root, unit, vars)?;
        // A drop-in's EnvironmentFile is read after the unit's own, so it wins.
        let dropin = self
            .root
            .join("etc/systemd/system")
            .join(format!("{unit}.d"))
            .join("50-pigsty-agent.conf");
        let target = Path::new("/")
            .join(STATE_DIR)
            .join("env")
            .join(format!("{unit}.env"));
        let text = dropin_text(&target);
        // Images carry it (a read-only /etc cannot take it now); an EnvironmentFile
        // is read at each start, so the unit needs no reload.
        if std::fs::read_to_string(&dropin).is_ok_and(|t| t == text) {
            return Ok(());
        }
        write_atomic(&dropin, text.as_bytes(), 0o644)?;
        self.systemctl(&["daemon-reload"])
    }
}

/// The drop-in that makes a unit read the agent's environment file for it.
pub fn dropin_text(env_file: &Path) -> String {
    format!(
        "# Written by pigsty agent firstboot.\n[Service]\nEnvironmentFile=-{}\n",
        env_file.display()
    )
}

/// Whether this boot is from an A/B slot (a read-only root; docs/updates.md).
fn booted_from_slot() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .is_ok_and(|c| c.split_whitespace().any(|w| w.starts_with("pigsty.slot=")))
}

/// Whether a tool that answers with its exit status said yes.
fn exit_ok(cmd: &mut Command) -> anyhow::Result<bool> {
    match sys::run(cmd) {
        Ok(_) => Ok(true),
        Err(sys::CmdError::Failed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_round_trip_through_quotes() {
        let dir = tempfile::tempdir().unwrap();
        write_env_file(
            dir.path(),
            "etcd.service",
            &[("ETCD_INITIAL_CLUSTER", "a=http://x:2380,b=\"q\"".into())],
        )
        .unwrap();
        let vars = read_env_file(&env_path(dir.path(), "etcd.service")).unwrap();
        assert_eq!(
            vars,
            vec![(
                "ETCD_INITIAL_CLUSTER".into(),
                "a=http://x:2380,b=\"q\"".into()
            )]
        );
    }
}
