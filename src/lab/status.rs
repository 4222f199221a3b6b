//! `lab status`: what each node is doing, seen from outside as the e2e sees it: its
//! VM, its agent's join state, its Patroni role and whether its REST API answers, its
//! etcd member's health, and which server its haproxy routes the primary service to.
//! A node whose agent said `done` but whose services have since failed shows as
//! unhealthy, not as done.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Lab, LabNode, vm};

/// One row of `lab status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub node: String,
    pub ip: String,
    /// `running (pid N)` or `off`.
    pub vm: String,
    /// Host CPU its qemu used while `lab status` looked, in cores (1.0 = one host core
    /// busy): how hungry the guest is, next to what its services answer.
    pub cpu: Option<f64>,
    /// The agent's join state, as reported to etcd.
    pub join: String,
    /// Patroni's view: leader, replica, sync_standby; empty when it does not answer.
    pub role: String,
    pub state: String,
    pub lag: Option<u64>,
    /// This node's Patroni REST API: `ok`, or why not.
    pub rest: String,
    /// This node's etcd member: `healthy`, `unhealthy`, or why not.
    pub etcd: String,
    /// The server this node's haproxy sends the primary service to (`none` when no
    /// server is up), or why it could not be read.
    pub haproxy: String,
    /// `ok`, or every problem the row shows.
    pub health: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct PatroniCluster {
    members: Vec<PatroniMember>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct PatroniMember {
    name: String,
    role: String,
    state: String,
    lag: Option<serde_json::Value>,
}

/// Short probes: a starved guest that needs longer than this is a finding.
const PROBE: Duration = Duration::from_secs(3);

/// `lab status`: every node's row. The calling thread must be in the lab's namespace.
pub fn status(lab: &Lab) -> anyhow::Result<Vec<StatusRow>> {
    let pids: Vec<Option<u32>> = lab
        .state
        .nodes
        .iter()
        .map(|n| vm::read_pid(&lab.vm(&n.name)))
        .collect::<anyhow::Result<_>>()?;
    let started = std::time::Instant::now();
    let before: Vec<Option<u64>> = pids.iter().map(|p| p.and_then(cpu_ticks)).collect();
    let endpoints = lab.etcd_endpoints();
    let access = lab.etcd_access()?;
    let reported = crate::agent::read_fleet(&endpoints, PROBE, &access).unwrap_or_default();
    let http = crate::http::client(PROBE, PROBE)?;
    let cluster = patroni_cluster(lab, &http);
    let mut rows = Vec::new();
    for (node, pid) in lab.state.nodes.iter().zip(&pids) {
        let vm = match pid {
            Some(pid) => format!("running (pid {pid})"),
            None => "off".into(),
        };
        let join = match reported.get(&node.name) {
            Some(s) => super::wait::progress(Some(s), &lab.vm(&node.name)).1,
            None => "unreported".into(),
        };
        let member = node.instance.as_ref().and_then(|i| cluster.get(i));
        let mut row = StatusRow {
            node: node.name.clone(),
            ip: node.ip.clone(),
            vm,
            cpu: None,
            join,
            role: member.map(|m| m.role.clone()).unwrap_or_default(),
            state: member.map(|m| m.state.clone()).unwrap_or_default(),
            lag: member.and_then(|m| m.lag.as_ref().and_then(serde_json::Value::as_u64)),
            rest: probe_rest(node, &http),
            etcd: probe_etcd(node, &access),
            haproxy: probe_haproxy(node, &http),
            health: String::new(),
        };
        row.health = health(node, &row, member.is_some());
        rows.push(row);
    }
    // The probes above took the window; a short one says little, so it lasts 1 s at least.
    if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let window = started.elapsed().as_secs_f64();
    for ((row, pid), before) in rows.iter_mut().zip(&pids).zip(&before) {
        let after = pid.and_then(cpu_ticks);
        if let (Some(b), Some(a)) = (before, after) {
            row.cpu = Some(a.saturating_sub(*b) as f64 / clock_ticks() / window);
        }
    }
    Ok(rows)
}

/// User plus system CPU time of a process, in clock ticks (`/proc/PID/stat` fields 14
/// and 15, counted after the command name, which may hold spaces).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`_SC_CLK_TCK`): 100 on every Linux architecture we run on.
fn clock_ticks() -> f64 {
    100.0
}

/// Patroni's `/cluster` from the first member that answers.
fn patroni_cluster(lab: &Lab, http: &reqwest::blocking::Client) -> BTreeMap<String, PatroniMember> {
    let mut cluster = BTreeMap::new();
    for node in &lab.state.nodes {
        let Some(port) = node.patroni else { continue };
        let url = format!("http://{}:{port}/cluster", node.ip);
        if let Ok((200, body)) = crate::http::get(http, &url)
            && let Ok(c) = serde_json::from_str::<PatroniCluster>(&body)
        {
            for m in c.members {
                cluster.entry(m.name.clone()).or_insert(m);
            }
            break;
        }
    }
    cluster
}

fn short(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    if text.contains("timed out") || text.contains("operation timed out") {
        "no answer (timeout)".into()
    } else if text.contains("onnection refused") {
        "no answer (refused)".into()
    } else {
        "no answer".into()
    }
}

fn probe_rest(node: &LabNode, http: &reqwest::blocking::Client) -> String {
    let Some(port) = node.patroni else {
        return String::new();
    };
    match crate::http::get(http, &format!("http://{}:{port}/patroni", node.ip)) {
        Ok((200, _)) => "ok".into(),
        Ok((code, _)) => format!("HTTP {code}"),
        Err(e) => short(&e),
    }
}

fn probe_etcd(node: &LabNode, access: &crate::agent::etcd::Access) -> String {
    let Some(port) = node.etcd else {
        return String::new();
    };
    let url = format!("{}://{}:{port}", access.scheme(), node.ip);
    match crate::agent::etcd::Client::with(&url, PROBE, access).and_then(|c| c.health()) {
        Ok(_) => "healthy".into(),
        Err(e) if crate::agent::etcd::answered(&e) => "unhealthy".into(),
        Err(e) => short(&e),
    }
}

/// haproxy's stats as CSV: the server of `<cluster>-primary` that is UP.
fn probe_haproxy(node: &LabNode, http: &reqwest::blocking::Client) -> String {
    let Some(h) = &node.haproxy else {
        return String::new();
    };
    let resp = http
        .get(&h.stats_csv)
        .basic_auth(&h.user, Some(&h.password))
        .send()
        .and_then(reqwest::blocking::Response::text);
    match resp {
        Ok(csv) => primary_of(&csv, &format!("{}-primary", h.cluster)),
        Err(e) => short(&anyhow::Error::new(e)),
    }
}

/// The UP servers of proxy `proxy` in haproxy's `;csv` stats (`none` when none is).
fn primary_of(csv: &str, proxy: &str) -> String {
    let mut header: Vec<&str> = Vec::new();
    let mut up = Vec::new();
    for line in csv.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            header = h.split(',').collect();
            continue;
        }
        let cols: Vec<&str> = line.split(',').collect();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .and_then(|i| cols.get(i).copied())
                .unwrap_or("")
        };
        let sv = col("svname");
        if col("pxname") == proxy && sv != "FRONTEND" && sv != "BACKEND" && col("status") == "UP" {
            up.push(sv.to_string());
        }
    }
    if up.is_empty() {
        "none".into()
    } else {
        up.join(",")
    }
}

/// Every problem a row shows, or `ok`.
fn health(node: &LabNode, row: &StatusRow, in_cluster: bool) -> String {
    let mut problems = Vec::new();
    if row.vm == "off" {
        problems.push("VM off".to_string());
    }
    if row.join != "done" {
        problems.push(format!("join {}", row.join));
    }
    if node.patroni.is_some() {
        if row.rest != "ok" {
            problems.push(format!("patroni REST {}", row.rest));
        }
        if !in_cluster {
            problems.push("not a member of the Patroni cluster".into());
        } else if !matches!(row.state.as_str(), "running" | "streaming") {
            problems.push(format!("patroni state {}", row.state));
        }
    }
    if node.etcd.is_some() && row.etcd != "healthy" {
        problems.push(format!("etcd {}", row.etcd));
    }
    if node.haproxy.is_some() && (row.haproxy == "none" || row.haproxy.starts_with("no answer")) {
        problems.push(format!("haproxy primary {}", row.haproxy));
    }
    if problems.is_empty() {
        "ok".into()
    } else {
        problems.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat =
            "4286 (qemu-system-x86 (x)) R 1 4286 4286 0 -1 4194560 1 0 0 0 4520 873 0 0 20 0 5 0";
        assert_eq!(parse_cpu_ticks(stat), Some(4520 + 873));
        assert_eq!(parse_cpu_ticks("4286 (qemu) R 1"), None);
    }

    #[test]
    fn the_primary_is_read_from_haproxy_stats() {
        let csv = "# pxname,svname,qcur,status,weight\n\
                   pg-lab-primary,FRONTEND,,OPEN,\n\
                   pg-lab-primary,pg-lab-1,0,DOWN,100\n\
                   pg-lab-primary,pg-lab-2,0,UP,100\n\
                   pg-lab-primary,BACKEND,0,UP,100\n\
                   pg-lab-replica,pg-lab-3,0,UP,100\n";
        assert_eq!(primary_of(csv, "pg-lab-primary"), "pg-lab-2");
        assert_eq!(primary_of(csv, "pg-lab-default"), "none");
    }
}
