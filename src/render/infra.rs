//! INFRA context: what Prometheus scrapes (every exporter of every node of the
//! fleet, labelled `cls`/`ins`/`ip` as Pigsty does), where it sends alerts, and what
//! nginx serves.

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Fleet, Node, PUSHGATEWAY_PORT};

/// One scrape target: an exporter of one instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Target {
    /// The cluster (`pg-test`, `etcd`, `minio`, a node cluster).
    pub cls: String,
    /// The instance (`pg-test-1`, `etcd-1`, `redis-ms-1-6379`, a nodename).
    pub ins: String,
    pub ip: String,
    /// `ip:port` Prometheus connects to.
    pub address: String,
    /// For multi-target exporters (redis_exporter's `/scrape`): what to probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param_target: Option<String>,
}

/// A scrape job: one kind of exporter, its metrics path, and its targets (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub name: &'static str,
    pub metrics_path: &'static str,
    /// The blackbox module a probe job asks for (`params: {module: [..]}`).
    pub module: Option<&'static str>,
    /// Keep the labels the scraped metrics carry (what clients pushed to Pushgateway).
    pub honor_labels: bool,
    /// Scraped over https with the infra node's client certificate (etcd, which asks
    /// every client for one when the fleet has a CA), as Pigsty's etcd job.
    pub tls: bool,
    pub targets: Vec<Target>,
}

/// Template context for infra files (`infra` in templates); null on other nodes.
pub fn context(fleet: &Fleet, node: &Node) -> Value {
    let Some(infra) = &node.infra else {
        return Value::Null;
    };
    let p = &infra.params;
    let home = home_domain(&p.infra_portal);
    let invalid = match &home {
        Some(d) if !is_server_name(d) => Some(format!(
            "infra_portal.home.domain {d:?} is not a host name nginx can serve"
        )),
        _ => None,
    };
    let invalid = invalid
        .or_else(|| scrape_timing(&p.vmetrics_scrape_interval, &p.vmetrics_scrape_timeout).err());
    let mut server_names: Vec<String> = home.into_iter().collect();
    server_names.extend([node.ip.to_string(), node.nodename.clone()]);
    server_names.dedup();
    json!({
        "name": infra.name,
        "jobs": scrape_jobs(fleet),
        "alertmanager": format!("127.0.0.1:{}", p.alertmanager_port),
        "pushgateway_port": PUSHGATEWAY_PORT,
        "scrape_interval": p.vmetrics_scrape_interval,
        "scrape_timeout": p.vmetrics_scrape_timeout,
        "server_names": server_names,
        "www": "/www/pigsty",
        "invalid": invalid,
        "grafana": grafana(node, p),
    })
}

/// Grafana's settings as Pigsty's grafana.ini writes them, and what its data source
/// points at (this node's Prometheus). Null where the node runs no Grafana.
fn grafana(node: &Node, p: &crate::model::InfraParams) -> Value {
    if !node.grafana() {
        return Value::Null;
    }
    // grafana.ini takes a value with `#` or `;` only between triple quotes, which
    // cannot hold `"""` themselves.
    let invalid = [
        ("grafana_admin_username", &p.grafana_admin_username),
        ("grafana_admin_password", &p.grafana_admin_password),
    ]
    .iter()
    .find(|(_, v)| v.contains("\"\"\"") || v.chars().any(char::is_control) || v.is_empty())
    .map(|(k, _)| {
        format!(
            "{k} is empty or holds `\"\"\"` or a control character, which grafana.ini cannot carry"
        )
    });
    json!({
        "port": p.grafana_port,
        "language": if p.language == "zh" { "zh-Hans" } else { "en-US" },
        "prometheus": format!("http://127.0.0.1:{}", p.prometheus_port),
        // Pigsty's `Logs` data source: this node's VictoriaLogs, when it runs one.
        "vlogs": node.victoria_logs().then(|| format!("http://127.0.0.1:{}", p.vlogs_port)),
        "invalid": invalid,
    })
}

/// A Prometheus duration (`10s`, `1m30s`, `500ms`: units y w d h m s ms, largest
/// first) in milliseconds.
fn duration_ms(s: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    let mut rest = s;
    let mut total: u64 = 0;
    let mut last = usize::MAX;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`; each unit once, largest first.
        let (i, (unit, mul)) = UNITS
            .iter()
            .enumerate()
            .find(|(_, (u, _))| rest.starts_with(u) && !(*u == "m" && rest.starts_with("ms")))?;
        let order = [0, 1, 2, 3, 6, 4, 5][i];
        if last != usize::MAX && order <= last {
            return None;
        }
        last = order;
        rest = &rest[unit.len()..];
        total = total.checked_add(n.checked_mul(*mul)?)?;
    }
    (total > 0).then_some(total)
}

/// `vmetrics_scrape_interval` / `vmetrics_scrape_timeout` as Prometheus takes them:
/// durations, the timeout no longer than the interval.
fn scrape_timing(interval: &str, timeout: &str) -> Result<(), String> {
    let i = duration_ms(interval).ok_or_else(|| {
        format!("vmetrics_scrape_interval `{interval}` is not a duration like 10s")
    })?;
    let t = duration_ms(timeout)
        .ok_or_else(|| format!("vmetrics_scrape_timeout `{timeout}` is not a duration like 8s"))?;
    if t > i {
        return Err(format!(
            "vmetrics_scrape_timeout {timeout} is longer than vmetrics_scrape_interval {interval}; Prometheus refuses that"
        ));
    }
    Ok(())
}

/// `infra_portal.home.domain`, if the inventory names one.
fn home_domain(portal: &std::collections::BTreeMap<String, Value>) -> Option<String> {
    portal
        .get("home")?
        .get("domain")?
        .as_str()
        .map(str::to_string)
}

/// A name nginx's `server_name` takes as one token (letters, digits, `.-_*`).
fn is_server_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'))
}

/// Every exporter of every node, one job per kind, in a fixed job order and with
/// targets sorted, so the file is the same whatever order the inventory lists hosts.
/// Jobs without targets are left out.
pub fn scrape_jobs(fleet: &Fleet) -> Vec<Job> {
    let certified = fleet.nodes.iter().all(|n| n.tls.is_some());
    let mut jobs: Vec<Job> = JOBS
        .iter()
        .map(|(name, metrics_path, _)| Job {
            name,
            metrics_path,
            module: None,
            honor_labels: *name == "pushgateway",
            tls: certified && matches!(*name, "etcd" | "pgsql-patroni" | "minio"),
            targets: Vec::new(),
        })
        .collect();
    for n in &fleet.nodes {
        for (job, (_, _, targets_of)) in jobs.iter_mut().zip(JOBS) {
            job.targets.extend(targets_of(n));
        }
    }
    for job in &mut jobs {
        job.targets.sort();
        job.targets.dedup();
    }
    // A fleet whose MinIO serves plain http has its members in job `minio`, as
    // Pigsty names it; only a mix of the two needs `minio-http`.
    if !jobs
        .iter()
        .any(|j| j.name == "minio" && !j.targets.is_empty())
        && let Some(plain) = jobs.iter_mut().find(|j| j.name == "minio-http")
    {
        plain.name = "minio";
    }
    jobs.push(ping(fleet));
    jobs.retain(|j| !j.targets.is_empty());
    jobs
}

/// Pigsty's `ping` job: the infra node's blackbox exporter probes every node, and
/// every VIP, with ICMP. Each infra node asks its own exporter (127.0.0.1); empty
/// when no infra node runs one.
fn ping(fleet: &Fleet) -> Job {
    let mut job = Job {
        name: "ping",
        metrics_path: "/probe",
        module: Some("icmp"),
        honor_labels: false,
        tls: false,
        targets: Vec::new(),
    };
    let Some(port) = fleet
        .nodes
        .iter()
        .filter_map(|n| n.infra.as_ref())
        .find(|i| i.params.blackbox_enabled.0)
        .map(|i| i.params.blackbox_port)
    else {
        return job;
    };
    let probe = |cls: &str, ins: &str, ip: String| Target {
        cls: cls.to_string(),
        ins: ins.to_string(),
        ip: ip.clone(),
        address: format!("127.0.0.1:{port}"),
        param_target: Some(ip),
    };
    for n in &fleet.nodes {
        job.targets
            .push(probe(&n.node_cluster, &n.nodename, n.ip.to_string()));
        if let Some(vip) = n.node.vip_address.filter(|_| n.node.vip_enabled.0) {
            job.targets
                .push(probe(&n.node_cluster, &n.nodename, vip.to_string()));
        }
        if let Some(pg) = n.pg.as_ref().filter(|p| p.params.pg_vip_enabled.0) {
            let vip = pg
                .params
                .pg_vip_address
                .split('/')
                .next()
                .unwrap_or_default();
            if !vip.is_empty() {
                job.targets
                    .push(probe(&pg.cluster, &pg.name, vip.to_string()));
            }
        }
    }
    job.targets.sort();
    job.targets
        .dedup_by(|a, b| a.param_target == b.param_target && a.ins == b.ins);
    job
}

type TargetsOf = fn(&Node) -> Vec<Target>;

/// Job name, metrics path, and the targets one node contributes.
const JOBS: [(&str, &str, TargetsOf); 13] = [
    ("node", "/metrics", node_exporter),
    ("prometheus", "/metrics", prometheus),
    ("alertmanager", "/metrics", alertmanager),
    ("pushgateway", "/metrics", pushgateway),
    ("etcd", "/metrics", etcd),
    ("minio", "/minio/v2/metrics/cluster", minio_tls),
    ("minio-http", "/minio/v2/metrics/cluster", minio_plain),
    ("pgsql", "/metrics", pg_exporter),
    ("pgbouncer", "/metrics", pgbouncer_exporter),
    ("patroni", "/metrics", patroni),
    ("pgsql-patroni", "/metrics", patroni_tls),
    ("haproxy", "/metrics", haproxy),
    ("redis", "/scrape", redis),
];

fn target(n: &Node, cls: &str, ins: &str, port: u16) -> Target {
    Target {
        cls: cls.to_string(),
        ins: ins.to_string(),
        ip: n.ip.to_string(),
        address: format!("{}:{port}", n.ip),
        param_target: None,
    }
}

fn node_exporter(n: &Node) -> Vec<Target> {
    let p = &n.node;
    p.node_exporter_enabled
        .0
        .then(|| target(n, &n.node_cluster, &n.nodename, p.node_exporter_port))
        .into_iter()
        .collect()
}

fn prometheus(n: &Node) -> Vec<Target> {
    let Some(i) = &n.infra else { return Vec::new() };
    vec![target(n, "infra", &i.name, i.params.prometheus_port)]
}

fn alertmanager(n: &Node) -> Vec<Target> {
    let Some(i) = &n.infra else { return Vec::new() };
    vec![target(n, "infra", &i.name, i.params.alertmanager_port)]
}

fn pushgateway(n: &Node) -> Vec<Target> {
    let Some(i) = n.infra.as_ref().filter(|i| i.params.pushgateway_enabled.0) else {
        return Vec::new();
    };
    vec![target(n, "infra", &i.name, PUSHGATEWAY_PORT)]
}

fn etcd(n: &Node) -> Vec<Target> {
    let Some(e) = &n.etcd else { return Vec::new() };
    vec![target(n, &e.cluster, &e.name, e.params.etcd_port)]
}

/// MinIO members serving https (`minio_https`): job `minio`, scraped over TLS.
fn minio_tls(n: &Node) -> Vec<Target> {
    minio(n).filter(|_| n.minio_https()).into_iter().collect()
}

/// Members serving plain http: job `minio` too when no member serves https (see
/// [`scrape_jobs`]), else `minio-http`.
fn minio_plain(n: &Node) -> Vec<Target> {
    minio(n).filter(|_| !n.minio_https()).into_iter().collect()
}

fn minio(n: &Node) -> Option<Target> {
    let m = n.minio.as_ref()?;
    Some(target(n, &m.cluster, &m.name, m.params.minio_port))
}

/// A PGSQL exporter, if the instance runs the component it reports on.
fn pg_target(n: &Node, port_of: fn(&crate::model::PgParams) -> Option<u16>) -> Vec<Target> {
    let Some(pg) = &n.pg else { return Vec::new() };
    port_of(&pg.params)
        .map(|port| target(n, &pg.cluster, &pg.name, port))
        .into_iter()
        .collect()
}

fn pg_exporter(n: &Node) -> Vec<Target> {
    pg_target(n, |p| Some(p.pg_exporter_port))
}

fn pgbouncer_exporter(n: &Node) -> Vec<Target> {
    if !n.pgbouncer_exporter() {
        return Vec::new();
    }
    pg_target(n, |p| Some(p.pgbouncer_exporter_port))
}

fn patroni(n: &Node) -> Vec<Target> {
    if n.patroni_https() {
        return Vec::new();
    }
    pg_target(n, |p| p.patroni_enabled.0.then_some(p.patroni_port))
}

/// Patroni serving https (`patroni_ssl_enabled`): a job of its own over TLS, as
/// Pigsty's `pgsql-patroni`.
fn patroni_tls(n: &Node) -> Vec<Target> {
    if !n.patroni_https() {
        return Vec::new();
    }
    pg_target(n, |p| p.patroni_enabled.0.then_some(p.patroni_port))
}

/// haproxy serves its own Prometheus metrics on the admin port, on every node that
/// runs it (a PGSQL node's, or one with haproxy_services).
fn haproxy(n: &Node) -> Vec<Target> {
    if !n.haproxy() {
        return Vec::new();
    }
    let (cls, ins) = match &n.pg {
        Some(pg) => (pg.cluster.as_str(), pg.name.as_str()),
        None => (n.node_cluster.as_str(), n.nodename.as_str()),
    };
    vec![target(n, cls, ins, n.node.haproxy_exporter_port)]
}

/// One target per redis instance, all through the node's redis_exporter, which
/// probes the instance named by the `target` parameter (as Pigsty scrapes redis).
fn redis(n: &Node) -> Vec<Target> {
    let Some(r) = n
        .redis
        .as_ref()
        .filter(|r| r.params.redis_exporter_enabled.0)
    else {
        return Vec::new();
    };
    r.instances
        .iter()
        .map(|(port, inst)| Target {
            param_target: Some(format!("redis://{}:{port}", n.ip)),
            ..target(n, &r.cluster, &inst.name, r.params.redis_exporter_port)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::load_str;

    const INVENTORY: &str = r#"
all:
  children:
    infra: { hosts: { 10.10.10.10: { infra_seq: 1 } } }
    etcd: { hosts: { 10.10.10.10: { etcd_seq: 1 } }, vars: { etcd_cluster: etcd } }
    pg-test:
      hosts:
        10.10.10.12: { pg_seq: 2, pg_role: replica }
        10.10.10.11: { pg_seq: 1, pg_role: primary, pgbouncer_enabled: false }
      vars: { pg_cluster: pg-test }
    redis-ms:
      hosts: { 10.10.10.13: { redis_node: 1, redis_instances: { 6380: {}, 6379: {} } } }
      vars: { redis_cluster: redis-ms }
    plain: { hosts: { 10.10.10.14: { node_exporter_enabled: false } } }
  vars: { alertmanager_port: 9059, infra_portal: { home: { domain: h.pigsty } } }
"#;

    fn jobs() -> Vec<Job> {
        let loaded = load_str("test.yml", INVENTORY).unwrap();
        scrape_jobs(&loaded.fleet)
    }

    fn job<'a>(jobs: &'a [Job], name: &str) -> &'a Job {
        jobs.iter().find(|j| j.name == name).unwrap()
    }

    fn addresses(job: &Job) -> Vec<&str> {
        job.targets.iter().map(|t| t.address.as_str()).collect()
    }

    #[test]
    fn every_exporter_of_every_node_sorted() {
        let jobs = jobs();
        let names: Vec<&str> = jobs.iter().map(|j| j.name).collect();
        assert_eq!(
            names,
            [
                "node",
                "prometheus",
                "alertmanager",
                "pushgateway",
                "etcd",
                "pgsql",
                "pgbouncer",
                "patroni",
                "haproxy",
                "redis",
                "ping"
            ],
            "no minio job: the fleet has no MinIO"
        );
        let ping = job(&jobs, "ping");
        assert_eq!((ping.metrics_path, ping.module), ("/probe", Some("icmp")));
        // Only pushed metrics keep their own labels.
        let honor: Vec<&str> = jobs
            .iter()
            .filter(|j| j.honor_labels)
            .map(|j| j.name)
            .collect();
        assert_eq!(honor, ["pushgateway"]);
        let probed: std::collections::BTreeSet<&str> = ping
            .targets
            .iter()
            .map(|t| t.param_target.as_deref().unwrap())
            .collect();
        assert_eq!(
            probed.into_iter().collect::<Vec<_>>(),
            [
                "10.10.10.10",
                "10.10.10.11",
                "10.10.10.12",
                "10.10.10.13",
                "10.10.10.14"
            ],
            "every node, through the infra node's own blackbox exporter"
        );
        assert!(ping.targets.iter().all(|t| t.address == "127.0.0.1:9115"));
        let node = job(&jobs, "node");
        assert_eq!(
            node.targets.len(),
            4,
            "10.10.10.14 has node_exporter disabled"
        );
        assert_eq!(
            addresses(job(&jobs, "pgsql")),
            ["10.10.10.11:9630", "10.10.10.12:9630"]
        );
        assert_eq!(addresses(job(&jobs, "pgbouncer")), ["10.10.10.12:9631"]);
        assert_eq!(addresses(job(&jobs, "alertmanager")), ["10.10.10.10:9059"]);
        let pg1 = &job(&jobs, "patroni").targets[0];
        assert_eq!(
            (pg1.cls.as_str(), pg1.ins.as_str(), pg1.ip.as_str()),
            ("pg-test", "pg-test-1", "10.10.10.11")
        );
    }

    /// MinIO members serving https are scraped over TLS in job `minio`; without a
    /// CA every member is plain http in job `minio`; only a mix needs `minio-http`.
    #[test]
    fn minio_is_scraped_over_tls_when_it_serves_https() {
        let inv = r#"all:
  children:
    infra: { hosts: { 10.10.10.10: { infra_seq: 1 } } }
    minio:
      hosts: { 10.10.10.11: { minio_seq: 1 }, 10.10.10.12: { minio_seq: 2 } }
      vars: { minio_cluster: minio }
    s3:
      hosts: { 10.10.10.13: { minio_seq: 1, minio_https: false } }
      vars: { minio_cluster: s3 }
  vars: { admin_ip: 10.10.10.10 }
"#;
        let fleet = load_str("m.yml", inv).unwrap().fleet;
        let plain = scrape_jobs(&fleet);
        let m = job(&plain, "minio");
        assert!(!m.tls);
        assert_eq!(m.targets.len(), 3, "no CA: all plain, one job");
        assert!(!plain.iter().any(|j| j.name == "minio-http"));

        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::Pki::open_or_create(dir.path()).unwrap();
        let fleet = crate::pki::with_certs(&fleet, &pki, true).unwrap();
        let jobs = scrape_jobs(&fleet);
        let tls = job(&jobs, "minio");
        assert!(tls.tls);
        assert_eq!(addresses(tls), ["10.10.10.11:9000", "10.10.10.12:9000"]);
        let http = job(&jobs, "minio-http");
        assert!(!http.tls);
        assert_eq!(addresses(http), ["10.10.10.13:9000"]);
        assert_eq!(
            fleet.minio_volumes("minio").as_deref(),
            Some("https://minio-{1...2}.pigsty:9000/data/minio")
        );
    }

    #[test]
    fn scrape_timing_is_checked_as_prometheus_reads_it() {
        assert_eq!(duration_ms("10s"), Some(10_000));
        assert_eq!(duration_ms("1m30s"), Some(90_000));
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("1h5m"), Some(3_900_000));
        for bad in ["", "10", "s", "10x", "1s1m", "10s10s", "-1s", "1.5s", "0s"] {
            assert_eq!(duration_ms(bad), None, "{bad:?}");
        }
        assert!(scrape_timing("10s", "8s").is_ok());
        assert!(scrape_timing("1m", "1m").is_ok());
        assert!(scrape_timing("5s", "8s").unwrap_err().contains("longer"));
        assert!(scrape_timing("often", "8s").unwrap_err().contains("often"));
        let loaded = load_str(
            "test.yml",
            &INVENTORY.replace(
                "alertmanager_port: 9059",
                "alertmanager_port: 9059, vmetrics_scrape_interval: 1m",
            ),
        )
        .unwrap();
        let node = loaded
            .fleet
            .nodes
            .iter()
            .find(|n| n.infra.is_some())
            .unwrap();
        assert_eq!(context(&loaded.fleet, node)["scrape_interval"], "1m");
    }

    #[test]
    fn redis_instances_go_through_the_node_exporter() {
        let jobs = jobs();
        let redis = job(&jobs, "redis");
        assert_eq!(redis.metrics_path, "/scrape");
        let t: Vec<(&str, &str, Option<&str>)> = redis
            .targets
            .iter()
            .map(|t| {
                (
                    t.ins.as_str(),
                    t.address.as_str(),
                    t.param_target.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            t,
            [
                (
                    "redis-ms-1-6379",
                    "10.10.10.13:9121",
                    Some("redis://10.10.10.13:6379")
                ),
                (
                    "redis-ms-1-6380",
                    "10.10.10.13:9121",
                    Some("redis://10.10.10.13:6380")
                ),
            ]
        );
    }

    #[test]
    fn infra_context_alerts_locally_and_names_the_home() {
        let loaded = load_str("test.yml", INVENTORY).unwrap();
        let infra = loaded
            .fleet
            .nodes
            .iter()
            .find(|n| n.infra.is_some())
            .unwrap();
        let c = context(&loaded.fleet, infra);
        assert_eq!(c["alertmanager"], "127.0.0.1:9059");
        assert_eq!(
            c["server_names"],
            json!(["h.pigsty", "10.10.10.10", infra.nodename])
        );
        assert_eq!(c["invalid"], Value::Null);
        let other = loaded
            .fleet
            .nodes
            .iter()
            .find(|n| n.infra.is_none())
            .unwrap();
        assert_eq!(context(&loaded.fleet, other), Value::Null);
    }

    #[test]
    fn server_names_are_single_tokens() {
        assert!(is_server_name("h.pigsty"));
        assert!(is_server_name("*.example.com"));
        assert!(!is_server_name("a b"));
        assert!(!is_server_name("a;b"));
        assert!(!is_server_name(""));
    }
}
