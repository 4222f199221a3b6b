//! Steps that start units and wait for their listening ports: pgbouncer, haproxy,
//! redis instances, and the infra services.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use anyhow::Context;

use super::Agent;
use super::retry::Attempt;

/// Wait until `addr` accepts a TCP connection; `unit`, when given, is checked too so
/// that a server that died says so in the last answer.
pub fn wait_tcp(agent: &Agent, step: &str, unit: Option<&str>, addr: &str) -> anyhow::Result<()> {
    let timeout = agent.opts.request;
    let what = match unit {
        Some(u) => format!("{u} to listen"),
        None => "a listener".to_string(),
    };
    agent.opts.policy().wait(step, &what, addr, || {
        let resolved: Vec<SocketAddr> = match addr.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => return Attempt::NotYet(format!("resolving {addr}: {e}")),
        };
        let mut last = String::from("no address");
        for a in resolved {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(_) => return Attempt::Ready(()),
                Err(e) => last = format!("connect {a}: {e}"),
            }
        }
        if let Some(u) = unit
            && let Ok(false) = agent.services.is_active(u)
        {
            last = format!("{u} is not running; {last}");
        }
        Attempt::NotYet(last)
    })?;
    Ok(())
}

fn start_and_listen(
    agent: &Agent,
    step: &str,
    unit: &str,
    ports: &[u16],
) -> anyhow::Result<String> {
    agent.services.start(unit)?;
    agent.checkpoint(&format!("{step}:started"))?;
    let ip = &agent.doc.node.ip;
    for port in ports {
        wait_tcp(agent, step, Some(unit), &format!("{ip}:{port}"))?;
    }
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    Ok(format!("{unit} listens on {ip}:{}", list.join(",")))
}

pub fn pgbouncer(agent: &mut Agent) -> anyhow::Result<String> {
    let pg = agent
        .doc
        .pg
        .clone()
        .context("node.json has no pg section")?;
    start_and_listen(
        agent,
        "pgbouncer",
        "pgbouncer.service",
        &[pg.pgbouncer_port],
    )
}

pub fn haproxy(agent: &mut Agent) -> anyhow::Result<String> {
    let ports = agent.doc.node.haproxy_ports.clone();
    if ports.is_empty() {
        anyhow::bail!("node.json lists no haproxy ports");
    }
    start_and_listen(agent, "haproxy", "haproxy.service", &ports)
}

/// `redis`: start each instance's unit and wait for its port; in cluster mode, form
/// or rejoin the Redis Cluster ([`super::redis::join`]).
pub fn redis(agent: &mut Agent) -> anyhow::Result<String> {
    let info = agent
        .doc
        .redis
        .clone()
        .context("node.json has no redis section")?;
    let mut started = Vec::new();
    for inst in &info.instances {
        start_and_listen(agent, "redis", &inst.unit, &[inst.port])?;
        started.push(inst.name.clone());
    }
    let up = format!("redis instances up: {}", started.join(", "));
    if info.mode != crate::model::RedisMode::Cluster {
        return Ok(up);
    }
    agent.checkpoint("redis:instances-up")?;
    Ok(format!("{up}; {}", super::redis::join(agent, &info)?))
}

/// `infra`: start Prometheus, Alertmanager and nginx (their Debian units).
pub fn infra(agent: &mut Agent) -> anyhow::Result<String> {
    let units = [
        "prometheus.service",
        "prometheus-alertmanager.service",
        "nginx.service",
    ];
    for unit in units {
        agent.services.start(unit)?;
    }
    Ok(format!("started {}", units.join(", ")))
}
