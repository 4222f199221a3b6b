//! Node → plan: what goes into one node's image (packages, files, services) and the
//! ordered join steps its first-boot agent runs. A pure function of the fleet.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::model::{Fleet, Module, Node, PgRole};
use crate::plan::{ImageBase, JoinStep, NodePlan, PlanNode, StepId};
use crate::render::{RenderError, RenderedFile, render_node};

/// A compiled node: its plan, the rendered overlay files the plan lists, and warnings
/// (things the build will need) kept beside the plan rather than in it.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub plan: NodePlan,
    pub files: Vec<RenderedFile>,
    pub warnings: Vec<String>,
}

/// Compile one node of the fleet: packages, services, join steps, and its rendered
/// files. Fails only when a value cannot be written into a file format.
pub fn compile(fleet: &Fleet, node: &Node) -> Result<Compiled, RenderError> {
    let warnings = Vec::new();
    // Validation refused unknown bases and majors the base does not ship.
    let catalog = Catalog::base(&node.node.node_base).map_err(|e| RenderError {
        node: node.nodename.clone(),
        file: "node_base".into(),
        reason: e.to_string(),
    })?;
    let pg_version = node
        .pg
        .as_ref()
        .map_or(catalog.newest_pg(), |p| p.params.pg_version);
    let mut packages = catalog.packages(node.modules.iter().copied(), pg_version);
    packages.extend(extra_packages(node));
    if node.node.vip_enabled.0 {
        packages.extend(catalog.feature("node_vip").iter().cloned());
    }
    if let Some(pg) = &node.pg {
        packages.extend(pg.packages.iter().cloned());
        if pg.params.pg_vip_enabled.0 {
            packages.extend(catalog.feature("pg_vip").iter().cloned());
        }
        if node.pgbouncer_exporter() {
            packages.extend(catalog.feature("pgbouncer_exporter").iter().cloned());
        }
    }
    if node.haproxy() {
        packages.extend(catalog.feature("haproxy").iter().cloned());
    }
    if node.grafana() {
        packages.extend(catalog.feature("grafana").iter().cloned());
    }
    if node.log_receiver().is_some() || !fleet.log_receivers(node).is_empty() {
        packages.extend(catalog.feature("logs").iter().cloned());
    }
    if node.victoria_logs() {
        packages.extend(catalog.feature("vlogs").iter().cloned());
    }
    packages.sort();
    packages.dedup();
    let mut plan = NodePlan {
        node: PlanNode {
            ip: node.ip.to_string(),
            nodename: node.nodename.clone(),
            node_cluster: node.node_cluster.clone(),
            names: node.names(),
            roles: node.roles(),
        },
        modules: node.modules.iter().copied().collect(),
        image: ImageBase {
            name: catalog.name.clone(),
            suite: catalog.suite.clone(),
            architecture: catalog.architecture.clone(),
            repositories: node.repos.clone(),
        },
        packages,
        files: Vec::new(),
        services: services(fleet, node),
        join: join_steps(fleet, node),
        digest: String::new(),
    };
    let files = render_node(fleet, node, &plan.join)?;
    plan.files = files.iter().map(RenderedFile::plan_entry).collect();
    plan.digest = digest(&plan, catalog);
    Ok(Compiled {
        plan,
        files,
        warnings,
    })
}

/// `node_packages` items may hold several comma-separated names, as in Pigsty.
fn extra_packages(node: &Node) -> impl Iterator<Item = String> + '_ {
    node.node
        .node_packages
        .iter()
        .flat_map(|item| item.split([',', ' ']))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

/// Units of a plan's services that systemd starts, not the agent, with the unit whose
/// start pulls each in (its `WantedBy=`): the exporters, which keep answering
/// (`pg_up 0`, `redis_up 0`) until what they report on is up. An image ships them
/// enabled. The pgbouncer exporter needs pgbouncer (`Requires=`/`BindsTo=`), so it
/// comes up with pgbouncer when the agent starts it.
pub const BOOT_UNITS: &[(&str, &str)] = &[
    ("prometheus-node-exporter.service", "multi-user.target"),
    ("prometheus-postgres-exporter.service", "multi-user.target"),
    ("prometheus-redis-exporter.service", "multi-user.target"),
    ("prometheus-blackbox-exporter.service", "multi-user.target"),
    ("prometheus-pgbouncer-exporter.service", "pgbouncer.service"),
    ("prometheus-pushgateway.service", "multi-user.target"),
    ("grafana-server.service", "multi-user.target"),
    // VictoriaLogs, the receiver on an infra node built from Pigsty's repository.
    ("vlogs.service", "multi-user.target"),
    // The infra node's log receiver, started on its first connection.
    ("systemd-journal-remote.socket", "sockets.target"),
    // And the fleet's logs served to read (journal-gatewayd on 19531).
    ("systemd-journal-gatewayd.socket", "sockets.target"),
    // One instance per log receiver (`pigsty-log-upload@10.10.10.10:9428.service`).
    ("pigsty-log-upload@.service", "multi-user.target"),
];

/// The unit file of `unit`: its template for an instance (`a@x.service`: `a@.service`).
pub fn unit_file_of(unit: &str) -> std::borrow::Cow<'_, str> {
    match (unit.split_once('@'), unit.rsplit_once('.')) {
        (Some((name, _)), Some((_, kind))) => format!("{name}@.{kind}").into(),
        _ => unit.into(),
    }
}

/// The unit that pulls in a [`BOOT_UNITS`] unit (or an instance of one); None for a
/// unit the agent starts.
pub fn boot_unit_of(unit: &str) -> Option<&'static str> {
    let file = unit_file_of(unit);
    BOOT_UNITS
        .iter()
        .find(|(u, _)| *u == file)
        .map(|(_, wanted_by)| *wanted_by)
}

/// Units the node runs: those the agent enables and starts, in start order, and the
/// [`BOOT_UNITS`] systemd starts.
fn services(fleet: &Fleet, node: &Node) -> Vec<String> {
    let mut out = vec!["pigsty-firstboot.service".to_string()];
    let mut add = |s: &str| out.push(s.to_string());
    if node.node.node_exporter_enabled.0 {
        add("prometheus-node-exporter.service");
    }
    if node.node.vip_enabled.0 {
        add("keepalived.service");
    }
    if node.etcd.is_some() {
        add("etcd.service");
    }
    if node.minio.is_some() {
        add("minio.service");
    }
    if let Some(pg) = &node.pg {
        let p = &pg.params;
        if p.patroni_enabled.0 {
            add("patroni.service");
        }
        if p.pgbouncer_enabled.0 {
            add("pgbouncer.service");
            if node.pgbouncer_exporter() {
                add("prometheus-pgbouncer-exporter.service");
            }
        }
        add("prometheus-postgres-exporter.service");
    }
    if node.haproxy() {
        out.push("haproxy.service".into());
    }
    if let Some(r) = &node.redis {
        for port in r.instances.keys() {
            out.push(format!("pigsty-redis@{}-{port}.service", r.name));
        }
        if r.params.redis_exporter_enabled.0 {
            out.push("prometheus-redis-exporter.service".into());
        }
    }
    if let Some(i) = &node.infra {
        for s in [
            "prometheus.service",
            "prometheus-alertmanager.service",
            "nginx.service",
        ] {
            out.push(s.to_string());
        }
        if i.params.blackbox_enabled.0 {
            out.push("prometheus-blackbox-exporter.service".into());
        }
        if i.params.pushgateway_enabled.0 {
            out.push("prometheus-pushgateway.service".into());
        }
        if node.grafana() {
            out.push("grafana-server.service".into());
        }
    }
    if node.victoria_logs() {
        out.push("vlogs.service".into());
    } else if node.log_receiver().is_some() {
        out.push("systemd-journal-remote.socket".into());
        out.push("systemd-journal-gatewayd.socket".into());
    }
    for to in fleet.log_receivers(node) {
        out.push(format!("pigsty-log-upload@{to}.service"));
    }
    out
}

struct Steps(Vec<JoinStep>);

impl Steps {
    fn add(&mut self, id: StepId, module: Module, after: &[Option<StepId>], action: String) {
        self.0.push(JoinStep {
            id,
            after: after.iter().flatten().copied().collect(),
            module,
            action,
        });
    }
}

/// The join order: etcd, then MinIO, then Patroni, then pgbouncer/haproxy, then
/// database objects and backups on the primary. Each step names what it waits for.
fn join_steps(fleet: &Fleet, node: &Node) -> Vec<JoinStep> {
    let mut s = Steps(Vec::new());
    let etcd = etcd_steps(&mut s, fleet, node);
    let minio = minio_steps(&mut s, fleet, node, etcd);
    if let Some(pg) = &node.pg {
        let p = &pg.params;
        let primary = pg.role == PgRole::Primary;
        let action = if primary {
            format!(
                "bootstrap {} as the primary of {} and wait for /primary",
                pg.name, pg.cluster
            )
        } else {
            format!(
                "wait for the leader of {}, clone {} from it and stream",
                pg.cluster, pg.name
            )
        };
        s.add(
            StepId::Patroni,
            Module::Pgsql,
            &[etcd, minio.server],
            action,
        );
        // The stanza comes first on the primary: PostgreSQL archives from its first
        // WAL segment on, and archive-push fails until the stanza exists.
        let backup_repo = (p.pgbackrest_method == "minio")
            .then_some(minio.ready)
            .flatten();
        // With the repo on each member's own disk (`local`), every member makes its
        // stanza there, as Pigsty does: whichever leads after a switchover or a
        // failover archives into its own.
        let local_repo = p.pgbackrest_method == crate::model::LOCAL_BACKUP_REPO;
        if (primary || local_repo) && p.pgbackrest_enabled.0 {
            let what = if primary {
                "so WAL archiving works from the start"
            } else {
                "so WAL archiving works when this member leads"
            };
            s.add(
                StepId::PgbackrestStanza,
                Module::Pgsql,
                &[Some(StepId::Patroni), backup_repo],
                format!(
                    "create stanza {} in repo {}, {what}",
                    pg.cluster, p.pgbackrest_method
                ),
            );
        }
        if p.pgbouncer_enabled.0 {
            s.add(
                StepId::Pgbouncer,
                Module::Pgsql,
                &[Some(StepId::Patroni)],
                format!("start pgbouncer on {}", p.pgbouncer_port),
            );
        }
        if node.haproxy() {
            s.add(
                StepId::Haproxy,
                Module::Pgsql,
                &[Some(StepId::Patroni)],
                "start haproxy services checking patroni".into(),
            );
        }
        // Every member of a writable cluster: the one that leads applies them.
        let sql = crate::render::applies_sql(fleet, node);
        if sql {
            s.add(
                StepId::PgUsers,
                Module::Pgsql,
                &[Some(StepId::Patroni)],
                format!(
                    "create {} role(s)",
                    p.pg_default_roles.len() + p.pg_users.len()
                ),
            );
            s.add(
                StepId::PgDatabases,
                Module::Pgsql,
                &[Some(StepId::PgUsers)],
                format!(
                    "create {} database(s) with schemas and extensions",
                    p.pg_databases.len()
                ),
            );
        }
        if primary && p.pgbackrest_enabled.0 {
            s.add(
                StepId::Pgbackrest,
                Module::Pgsql,
                &[
                    sql.then_some(StepId::PgDatabases),
                    Some(StepId::PgbackrestStanza),
                ],
                format!(
                    "take the first full backup of {} into repo {}",
                    pg.cluster, p.pgbackrest_method
                ),
            );
        }
    }
    if let Some(r) = &node.redis {
        s.add(
            StepId::Redis,
            Module::Redis,
            &[],
            format!(
                "start {} redis instance(s) of {} ({})",
                r.instances.len(),
                r.cluster,
                crate::model::serde_plain(&r.params.redis_mode)
            ),
        );
    }
    // haproxy_services of a node without PostgreSQL: after the local servers it may
    // balance (MinIO), which its health checks find either way.
    if node.pg.is_none() && node.haproxy() {
        s.add(
            StepId::Haproxy,
            Module::Node,
            &[minio.server],
            format!(
                "start haproxy with {} service(s) (haproxy_services)",
                node.haproxy_services().count()
            ),
        );
    }
    if node.infra.is_some() {
        s.add(
            StepId::Infra,
            Module::Infra,
            &[],
            "start prometheus, alertmanager and nginx".into(),
        );
    }
    // The final step waits for the steps nothing else waits for.
    let leaves: Vec<StepId> =
        s.0.iter()
            .filter(|st| !s.0.iter().any(|o| o.after.contains(&st.id)))
            .map(|st| st.id)
            .collect();
    s.0.push(JoinStep {
        id: StepId::Done,
        after: leaves,
        module: Module::Node,
        action: "write the done marker and report to etcd".into(),
    });
    s.0
}

/// etcd: members join or bootstrap; other PGSQL nodes only wait for the cluster.
fn etcd_steps(s: &mut Steps, fleet: &Fleet, node: &Node) -> Option<StepId> {
    if let Some(e) = &node.etcd {
        let peers: Vec<String> = fleet
            .etcd_members(&e.cluster)
            .iter()
            .map(|n| n.nodename.clone())
            .collect();
        s.add(StepId::Etcd, Module::Etcd, &[], format!(
            "join etcd cluster {} as {} (member add as learner if a healthy cluster answers, else bootstrap with {} member(s))",
            e.cluster, e.name, peers.len()
        ));
        return Some(StepId::Etcd);
    }
    if node.pg.is_some() {
        s.add(
            StepId::EtcdReady,
            Module::Etcd,
            &[],
            "wait until the etcd cluster answers healthy".into(),
        );
        return Some(StepId::EtcdReady);
    }
    None
}

#[derive(Clone, Copy)]
struct MinioIds {
    /// The local server step, if this node is a member.
    server: Option<StepId>,
    /// The step after which the cluster's buckets can be used from this node.
    ready: Option<StepId>,
}

fn minio_steps(s: &mut Steps, fleet: &Fleet, node: &Node, etcd: Option<StepId>) -> MinioIds {
    let needs_repo = node.pg.as_ref().is_some_and(|pg| {
        pg.role == PgRole::Primary
            && pg.params.pgbackrest_enabled.0
            && pg.params.pgbackrest_method == "minio"
    });
    let Some(m) = &node.minio else {
        if needs_repo {
            s.add(
                StepId::MinioReady,
                Module::Minio,
                &[],
                "wait until the MinIO cluster has write quorum".into(),
            );
            return MinioIds {
                server: None,
                ready: Some(StepId::MinioReady),
            };
        }
        return MinioIds {
            server: None,
            ready: None,
        };
    };
    let members = fleet.minio_members(&m.cluster);
    let after_etcd = if node.etcd.is_some() { etcd } else { None };
    s.add(
        StepId::Minio,
        Module::Minio,
        &[after_etcd],
        format!(
            "start {} with the {} member(s) of {} and wait for /minio/health/cluster",
            m.params.minio_server_bin,
            members.len(),
            m.cluster
        ),
    );
    let first = members.first().is_some_and(|n| n.ip == node.ip);
    if first {
        s.add(
            StepId::MinioBuckets,
            Module::Minio,
            &[Some(StepId::Minio)],
            format!(
                "create {} bucket(s) and {} user(s)",
                m.params.minio_buckets.len(),
                m.params.minio_users.len()
            ),
        );
    }
    MinioIds {
        server: Some(StepId::Minio),
        ready: Some(if first {
            StepId::MinioBuckets
        } else {
            StepId::Minio
        }),
    }
}

fn digest(plan: &NodePlan, catalog: &Catalog) -> String {
    #[derive(Serialize)]
    struct Input<'a> {
        tool: &'a str,
        catalog: &'a Catalog,
        plan: &'a NodePlan,
    }
    let input = Input {
        tool: concat!("pigsty ", env!("CARGO_PKG_VERSION")),
        catalog,
        plan,
    };
    let bytes = serde_json::to_vec(&input).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}
