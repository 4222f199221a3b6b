//! Starting and stopping the node's services. The agent talks to a [`ServiceManager`]:
//! on a node that is systemd ([`Systemd`]); in tests, and anywhere without systemd,
//! [`Processes`] runs each unit's program directly.
//!
//! Environment overrides (etcd's `initial-cluster-state=existing` when joining) go to
//! `<root>/var/lib/pigsty/env/<unit>.env`, read after the unit's own EnvironmentFile
//! so they win over the image's `/etc/default/*`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::state::{STATE_DIR, write_atomic};
use crate::sys;

pub trait ServiceManager: Sync {
    /// Enable and start `unit`; a running unit is left as it is.
    fn start(&self, unit: &str) -> anyhow::Result<()>;
    fn stop(&self, unit: &str) -> anyhow::Result<()>;
    fn is_active(&self, unit: &str) -> anyhow::Result<bool>;
    /// Environment for the unit's next start, over its shipped EnvironmentFile.
    fn set_env(&self, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()>;
}

/// The override file of a unit under a root.
pub fn env_path(root: &Path, unit: &str) -> PathBuf {
    root.join(STATE_DIR).join("env").join(format!("{unit}.env"))
}

fn write_env_file(root: &Path, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
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
        sys::run(
            Command::new("systemctl")
                .env("SYSTEMCTL_SKIP_SYSV", "1")
                .args(["enable", "--no-reload", unit]),
        )?;
        self.systemctl(&["start", unit])
    }

    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.systemctl(&["stop", unit])
    }

    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        exit_ok(Command::new("systemctl").args(["is-active", "--quiet", unit]))
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
        let text = format!(
            "# Written by pigsty agent firstboot.\n[Service]\nEnvironmentFile=-{}\n",
            target.display()
        );
        write_atomic(&dropin, text.as_bytes(), 0o644)?;
        self.systemctl(&["daemon-reload"])
    }
}

/// How [`Processes`] runs one unit.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Read in order, like the unit's EnvironmentFile= lines; the override file last.
    pub env_files: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    /// Run as this user (through runuser).
    pub user: Option<String>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr go here (appended).
    pub log: PathBuf,
}

/// Runs units as child processes, each in its own process group (so a stop reaches
/// Patroni's postgres too), and stops them all when dropped.
#[derive(Debug)]
pub struct Processes {
    root: PathBuf,
    specs: Mutex<BTreeMap<String, ProcessSpec>>,
    children: Mutex<BTreeMap<String, Child>>,
    /// Units started once: a "reboot" starts them again, as systemd does enabled ones.
    enabled: Mutex<std::collections::BTreeSet<String>>,
}

impl Processes {
    pub fn new(root: &Path) -> Processes {
        Processes {
            root: root.to_path_buf(),
            specs: Mutex::new(BTreeMap::new()),
            children: Mutex::new(BTreeMap::new()),
            enabled: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    pub fn define(&self, unit: &str, spec: ProcessSpec) {
        self.specs.lock().unwrap().insert(unit.to_string(), spec);
    }

    /// The process id of a running unit: our child, or one a killed agent started
    /// (found through its pid file, as systemd finds a service after the agent died).
    pub fn pid(&self, unit: &str) -> Option<u32> {
        let mut children = self.children.lock().unwrap();
        if let Some(child) = children.get_mut(unit)
            && let Ok(None) = child.try_wait()
        {
            return Some(child.id());
        }
        drop(children);
        let text = std::fs::read_to_string(self.pidfile(unit)).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    fn pidfile(&self, unit: &str) -> PathBuf {
        self.root
            .join("run/pigsty-processes")
            .join(format!("{unit}.pid"))
    }

    fn units(&self) -> Vec<String> {
        self.specs.lock().unwrap().keys().cloned().collect()
    }

    /// SIGKILL every unit's process group at once: the machine lost power.
    pub fn kill_all(&self) {
        for unit in self.units() {
            if let Some(pid) = self.pid(&unit) {
                signal_group(pid, "KILL");
                if let Some(mut child) = self.children.lock().unwrap().remove(&unit) {
                    let _ = child.wait();
                }
                wait_gone(pid, Duration::from_secs(10));
                tracing::info!(unit, "killed");
            }
            let _ = std::fs::remove_file(self.pidfile(&unit));
        }
    }

    /// The machine loses power and boots again: every process dies at once, then the
    /// units started before (enabled, under systemd) start again.
    pub fn power_cycle(&self) -> anyhow::Result<()> {
        self.kill_all();
        let enabled: Vec<String> = self.enabled.lock().unwrap().iter().cloned().collect();
        for unit in enabled {
            self.start(&unit)?;
        }
        Ok(())
    }

    fn command(&self, unit: &str, spec: &ProcessSpec) -> anyhow::Result<Command> {
        use std::os::unix::process::CommandExt;
        // runuser, like systemd's User=, also gives the user its supplementary groups
        // (postgres reads the SSL key through ssl-cert).
        let mut cmd = match &spec.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&spec.program);
                c
            }
            None => Command::new(&spec.program),
        };
        cmd.args(&spec.args).stdin(Stdio::null()).process_group(0);
        let overrides = env_path(&self.root, unit);
        for file in spec.env_files.iter().chain([&overrides]) {
            for (k, v) in read_env_file(file)? {
                cmd.env(k, v);
            }
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        cmd.stdout(log.try_clone()?).stderr(log);
        Ok(cmd)
    }
}

/// Whether a tool that answers with its exit status said yes.
fn exit_ok(cmd: &mut Command) -> anyhow::Result<bool> {
    match sys::run(cmd) {
        Ok(_) => Ok(true),
        Err(sys::CmdError::Failed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn signal_group(pid: u32, signal: &str) {
    let _ =
        exit_ok(Command::new("kill").args([format!("-{signal}"), "--".into(), format!("-{pid}")]));
}

impl ServiceManager for Processes {
    fn start(&self, unit: &str) -> anyhow::Result<()> {
        if self.pid(unit).is_some() {
            return Ok(());
        }
        let spec = self
            .specs
            .lock()
            .unwrap()
            .get(unit)
            .cloned()
            .with_context(|| format!("no process is defined for unit {unit}"))?;
        let mut cmd = self.command(unit, &spec)?;
        tracing::debug!(unit, command = %sys::display(&cmd), "spawning");
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {unit}: {}", sys::display(&cmd)))?;
        self.children
            .lock()
            .unwrap()
            .insert(unit.to_string(), pid_child(child, &self.pidfile(unit))?);
        self.enabled.lock().unwrap().insert(unit.to_string());
        Ok(())
    }

    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        let Some(pid) = self.pid(unit) else {
            return Ok(());
        };
        signal_group(pid, "TERM");
        let gone = wait_gone(pid, Duration::from_secs(15));
        // The leader is gone (or would not go); its group may still hold children
        // (Patroni's postgres).
        signal_group(pid, "KILL");
        if let Some(mut child) = self.children.lock().unwrap().remove(unit) {
            child
                .wait()
                .with_context(|| format!("waiting for {unit} to exit"))?;
        }
        if !gone {
            wait_gone(pid, Duration::from_secs(5));
        }
        let _ = std::fs::remove_file(self.pidfile(unit));
        Ok(())
    }

    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        Ok(self.pid(unit).is_some())
    }

    fn set_env(&self, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
        write_env_file(&self.root, unit, vars)
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for unit in self.units() {
            let _ = self.stop(&unit);
        }
    }
}

/// Record a new child's pid beside the root, for an agent started after this one.
fn pid_child(child: Child, pidfile: &Path) -> anyhow::Result<Child> {
    write_atomic(pidfile, format!("{}\n", child.id()).as_bytes(), 0o644)?;
    Ok(child)
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses: `123 (etcd) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Wait until a process is gone; false if it is still there after `limit`.
fn wait_gone(pid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
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

    #[test]
    fn processes_start_once_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let pm = Processes::new(dir.path());
        pm.define(
            "sleep.service",
            ProcessSpec {
                program: "sleep".into(),
                args: vec!["30".into()],
                log: dir.path().join("sleep.log"),
                ..ProcessSpec::default()
            },
        );
        pm.start("sleep.service").unwrap();
        let pid = pm.pid("sleep.service").unwrap();
        pm.start("sleep.service").unwrap();
        assert_eq!(pm.pid("sleep.service"), Some(pid));
        pm.stop("sleep.service").unwrap();
        assert!(!pm.is_active("sleep.service").unwrap());
        assert!(pm.start("other.service").is_err());
    }
}
