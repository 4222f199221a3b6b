//! The tests' service manager: runs each unit's program directly as a child process
//! (etcd, Patroni, pgbouncer, haproxy, the MinIO stand-in on loopback), where a node
//! has systemd. Test-only, so it lives here and not in the shipped agent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use pigsty::agent::service::{ServiceManager, env_path, read_env_file, write_env_file};
use pigsty::agent::state::write_atomic;
use pigsty::sys;

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

    /// Our child exited with a failure status.
    fn is_failed(&self, unit: &str) -> anyhow::Result<bool> {
        let mut children = self.children.lock().unwrap();
        Ok(children
            .get_mut(unit)
            .and_then(|c| c.try_wait().ok().flatten())
            .is_some_and(|status| !status.success()))
    }

    fn set_env(&self, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
        write_env_file(&self.root, unit, vars)
    }

    /// A process here cannot be told to reload: it restarts, as systemd's
    /// reload-or-restart does for a unit without ExecReload=.
    fn reload(&self, unit: &str) -> anyhow::Result<()> {
        self.restart(unit)
    }

    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        if self.pid(unit).is_none() {
            return Ok(());
        }
        self.stop(unit)?;
        self.start(unit)
    }

    /// No unit files here: a process is defined by its spec.
    fn daemon_reload(&self) -> anyhow::Result<()> {
        Ok(())
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
