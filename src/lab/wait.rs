//! Waiting for a lab's agents: every node's join state, from its etcd report or,
//! before etcd answers, from its console.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::Lab;
use super::vm::{self, VmPaths};

impl Lab {
    /// Wait until every node's agent reports done, or name the ones that did not.
    /// The calling thread must be in the lab's namespace (see [`net::enter`]).
    pub fn wait_done(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        let mut restarts: BTreeMap<String, u32> = BTreeMap::new();
        let endpoints = self.etcd_endpoints();
        let access = self.etcd_access()?;
        loop {
            let reported = if endpoints.is_empty() {
                BTreeMap::new()
            } else {
                crate::agent::read_fleet(&endpoints, Duration::from_secs(3), &access)
                    .unwrap_or_default()
            };
            let mut pending = Vec::new();
            for node in &self.state.nodes {
                let paths = self.vm(&node.name);
                let running = vm::read_pid(&paths)?.is_some();
                if let Some(why) = boot_stalled(
                    &paths,
                    running,
                    reported.contains_key(&node.name),
                    self.state.kvm,
                ) {
                    let n = restarts.entry(node.name.clone()).or_insert(0);
                    if *n < BOOT_RETRIES {
                        *n += 1;
                        eprintln!(
                            "[{:>5.1}s] {}: {why}; power-cycling it ({n} of {BOOT_RETRIES}). Console tail:\n{}",
                            start.elapsed().as_secs_f64(),
                            node.name,
                            vm::serial_tail(&paths, 3)
                        );
                        vm::kill(&paths)?;
                        self.start(&node.name)?;
                        last.remove(&node.name);
                        pending.push((node.name.clone(), "booting again".to_string()));
                        continue;
                    }
                }
                if !running {
                    bail!(
                        "{}'s VM is not running; console tail:\n{}\n{}",
                        node.name,
                        vm::serial_tail(&paths, 30),
                        super::logs_hint(self)
                    );
                }
                let (done, where_) = progress(reported.get(&node.name), &paths);
                if let Some(s) = reported.get(&node.name)
                    && s.current_step().status == crate::agent::state::StepStatus::Failed
                {
                    // The agent stops at a failed step; waiting longer cannot help.
                    bail!(
                        "{}'s first boot failed: {where_}\nconsole tail:\n{}\n{}",
                        node.name,
                        vm::serial_tail(&paths, 15),
                        super::logs_hint(self)
                    );
                }
                if last.get(&node.name) != Some(&where_) {
                    eprintln!(
                        "[{:>5.1}s] {}: {where_}",
                        start.elapsed().as_secs_f64(),
                        node.name
                    );
                    last.insert(node.name.clone(), where_.clone());
                }
                if !done {
                    pending.push((node.name.clone(), where_));
                }
            }
            if pending.is_empty() {
                return Ok(start.elapsed());
            }
            if Instant::now() >= deadline {
                let lines: Vec<String> = pending
                    .iter()
                    .map(|(n, w)| {
                        format!(
                            "  {n}: {w}\n    console: {}",
                            vm::serial_tail(&self.vm(n), 5).replace('\n', "\n    console: ")
                        )
                    })
                    .collect();
                bail!(
                    "not every node finished its first boot within {timeout:?}:\n{}\n{}",
                    lines.join("\n"),
                    super::logs_hint(self)
                );
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// Power-cycles of one VM that showed no sign of life while booting, per wait.
const BOOT_RETRIES: u32 = 2;

/// How long a booting VM may show no sign of life (nothing in its journal, no agent
/// line on its console, no report in etcd) before it is taken for hung. A healthy
/// guest's journal starts streaming about a minute after qemu starts, under TCG with
/// three guests on two cores as well.
fn boot_stall_limit(kvm: bool) -> u64 {
    if kvm { 120 } else { 300 }
}

/// Why a VM counts as stuck in early boot, if it does: qemu gone before the guest
/// said anything (it has exited during firmware under TCG), or silence past the
/// limit (under TCG a guest's second vCPU sometimes never gets its timer: RCU stall
/// reports on the console, and nothing else). A VM that has shown life is never
/// power-cycled here: its failures are the join's, reported as such.
fn boot_stalled(paths: &VmPaths, running: bool, reported: bool, kvm: bool) -> Option<String> {
    let journal = std::fs::metadata(paths.journal()).is_ok_and(|m| m.len() > 0);
    if reported || journal || vm::last_agent_line(paths).is_some() {
        return None;
    }
    if !running {
        return Some("qemu exited before the guest's journal started".into());
    }
    let booted: u64 = std::fs::read_to_string(paths.booted_at())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let silent = crate::agent::state::now().saturating_sub(booted);
    (silent > boot_stall_limit(kvm))
        .then(|| format!("no sign of life {silent} s after qemu started"))
}

/// Where a node stands: from its etcd report, else from its console.
pub(super) fn progress(
    report: Option<&crate::agent::state::State>,
    paths: &VmPaths,
) -> (bool, String) {
    if let Some(s) = report {
        if s.done {
            return (true, "done".into());
        }
        let step = s.current_step();
        let mut line = format!("{} {}", s.current, step.status.as_str());
        if !step.error.is_empty() {
            line.push_str(&format!(": {}", step.error));
        }
        return (false, line);
    }
    match vm::last_agent_line(paths) {
        Some(l) => (false, format!("{l} (console)")),
        None => (false, "booting".into()),
    }
}

/// Where one node's first boot spent its time: the boot leg (qemu start to the
/// agent's first step) and each join step, in seconds, from the agent's own step
/// timings in etcd.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Legs {
    pub node: String,
    pub boot: Option<u64>,
    /// (step, seconds) in run order.
    pub steps: Vec<(String, u64)>,
    /// qemu start to `done`.
    pub total: Option<u64>,
}

impl Lab {
    /// Every node's legs, from its report in etcd. The calling thread must be in the
    /// lab's namespace.
    pub fn legs(&self) -> anyhow::Result<Vec<Legs>> {
        let reported = crate::agent::read_fleet(
            &self.etcd_endpoints(),
            Duration::from_secs(5),
            &self.etcd_access()?,
        )?;
        let mut out = Vec::new();
        for node in &self.state.nodes {
            let Some(state) = reported.get(&node.name) else {
                continue;
            };
            let booted: Option<u64> = std::fs::read_to_string(self.vm(&node.name).booted_at())
                .ok()
                .and_then(|t| t.trim().parse().ok());
            out.push(legs_of(&node.name, state, booted));
        }
        Ok(out)
    }
}

fn legs_of(node: &str, state: &crate::agent::state::State, booted: Option<u64>) -> Legs {
    let steps: Vec<(String, u64)> = state
        .order
        .iter()
        .filter_map(|id| {
            let s = state.steps.get(id)?;
            (s.finished_at >= s.started_at && s.started_at > 0)
                .then(|| (id.clone(), s.finished_at - s.started_at))
        })
        .collect();
    let first = state.order.first().and_then(|id| state.steps.get(id));
    let last = state.steps.get("done");
    Legs {
        node: node.to_string(),
        boot: booted
            .zip(first)
            .map(|(b, f)| f.started_at.saturating_sub(b)),
        steps,
        total: booted
            .zip(last)
            .map(|(b, l)| l.finished_at.saturating_sub(b)),
    }
}

/// The legs as a table: one row per node, one column per step any node ran.
pub fn legs_table(legs: &[Legs]) -> String {
    let mut columns: Vec<String> = Vec::new();
    for l in legs {
        for (id, _) in &l.steps {
            if !columns.contains(id) {
                columns.push(id.clone());
            }
        }
    }
    let mut head = vec!["NODE".to_string(), "boot".to_string()];
    head.extend(columns.iter().cloned());
    head.push("total".into());
    let mut rows = vec![head];
    for l in legs {
        let mut row = vec![l.node.clone(), opt(l.boot)];
        for c in &columns {
            row.push(opt(l.steps.iter().find(|(id, _)| id == c).map(|(_, s)| *s)));
        }
        row.push(opt(l.total));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn opt(v: Option<u64>) -> String {
    v.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::state::{State, StepState, StepStatus};

    #[test]
    fn a_silent_boot_is_stalled_and_a_live_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let paths = VmPaths {
            dir: dir.path().to_path_buf(),
        };
        let now = crate::agent::state::now();
        std::fs::write(paths.booted_at(), format!("{}\n", now - 400)).unwrap();
        std::fs::write(
            paths.serial(),
            "[ 24.4] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n",
        )
        .unwrap();
        // Under TCG, 400 s of silence is a hang; under KVM as well; 60 s is not.
        assert!(boot_stalled(&paths, true, false, false).is_some());
        assert!(boot_stalled(&paths, true, false, true).is_some());
        std::fs::write(paths.booted_at(), format!("{}\n", now - 60)).unwrap();
        assert_eq!(boot_stalled(&paths, true, false, false), None);
        // qemu gone before the guest said anything.
        assert!(
            boot_stalled(&paths, false, false, false)
                .unwrap()
                .contains("exited")
        );
        // Any sign of life, and the boot is the join's business.
        std::fs::write(paths.booted_at(), format!("{}\n", now - 400)).unwrap();
        assert_eq!(
            boot_stalled(&paths, true, true, false),
            None,
            "reported in etcd"
        );
        std::fs::write(paths.journal(), "{}\n").unwrap();
        assert_eq!(
            boot_stalled(&paths, false, false, false),
            None,
            "journal streaming"
        );
        std::fs::write(paths.journal(), "").unwrap();
        std::fs::write(paths.serial(), "pigsty agent: step etcd: running\n").unwrap();
        assert_eq!(
            boot_stalled(&paths, true, false, false),
            None,
            "agent on the console"
        );
    }

    #[test]
    fn legs_come_from_the_step_timings() {
        let mut st = State {
            order: vec!["etcd".into(), "patroni".into(), "done".into()],
            ..State::default()
        };
        for (id, a, b) in [
            ("etcd", 160, 185),
            ("patroni", 185, 240),
            ("done", 240, 240),
        ] {
            st.steps.insert(
                id.into(),
                StepState {
                    status: StepStatus::Done,
                    started_at: a,
                    finished_at: b,
                    ..StepState::default()
                },
            );
        }
        let l = legs_of("pg-lab-1", &st, Some(100));
        assert_eq!(l.boot, Some(60));
        assert_eq!(l.total, Some(140));
        assert_eq!(l.steps[1], ("patroni".to_string(), 55));
        let t = legs_table(&[l]);
        assert_eq!(
            t,
            "NODE      boot  etcd  patroni  done  total\npg-lab-1    60    25       55     0    140\n"
        );
    }
}
