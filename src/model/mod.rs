//! The validated, typed fleet: what compile and render read. Nothing here looks at
//! YAML; every value has been checked and defaulted by `inventory`.

mod params;
pub mod paths;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

pub use params::*;

/// Identity variables, read by the validator rather than by a parameter struct.
pub const IDENTITY_KEYS: &[&str] = &[
    "nodename",
    "node_cluster",
    "infra_seq",
    "etcd_cluster",
    "etcd_seq",
    "pg_cluster",
    "pg_seq",
    "pg_role",
    "minio_cluster",
    "minio_seq",
    "redis_cluster",
    "redis_node",
    "redis_instances",
];

/// Pigsty's default passwords: a node using any of these gets a warning.
pub const DEFAULT_PASSWORDS: &[(&str, &str)] = &[
    ("pg_admin_password", "DBUser.DBA"),
    ("pg_monitor_password", "DBUser.Monitor"),
    ("pg_replication_password", "DBUser.Replicator"),
    ("patroni_password", "Patroni.API"),
    ("haproxy_admin_password", "pigsty"),
    ("grafana_admin_password", "pigsty"),
    ("minio_secret_key", "S3User.MinIO"),
    ("etcd_root_password", "Etcd.Root"),
];

impl Node {
    /// The value of a password parameter of [`DEFAULT_PASSWORDS`] this node's services
    /// use (None when none of its modules reads it).
    pub fn password(&self, key: &str) -> Option<&str> {
        let pg = self.pg.as_ref().map(|p| &p.params);
        Some(match key {
            "pg_admin_password" => &pg?.pg_admin_password,
            "pg_monitor_password" => &pg?.pg_monitor_password,
            "pg_replication_password" => &pg?.pg_replication_password,
            "patroni_password" => &pg?.patroni_password,
            "haproxy_admin_password" if self.node.haproxy_enabled.0 => {
                &self.node.haproxy_admin_password
            }
            "grafana_admin_password" if self.grafana() => {
                &self.infra.as_ref()?.params.grafana_admin_password
            }
            "minio_secret_key" => &self.minio.as_ref()?.params.minio_secret_key,
            "etcd_root_password" => &self.etcd.as_ref()?.params.etcd_root_password,
            _ => return None,
        })
    }

    /// Whether this node's Patroni REST API serves https (`patroni_ssl_enabled`, with a
    /// certificate from the fleet CA).
    pub fn patroni_https(&self) -> bool {
        self.tls.is_some()
            && self
                .pg
                .as_ref()
                .is_some_and(|p| p.params.patroni_ssl_enabled.0)
    }

    /// Whether this node's MinIO member serves https (`minio_https`, with a
    /// certificate from the fleet CA).
    pub fn minio_https(&self) -> bool {
        self.tls.is_some() && self.minio.as_ref().is_some_and(|m| m.params.minio_https.0)
    }

    /// This node's Patroni REST API (`http://ip:8008`, https with `patroni_https`).
    pub fn patroni_url(&self) -> Option<String> {
        let p = &self.pg.as_ref()?.params;
        let scheme = if self.patroni_https() {
            "https"
        } else {
            "http"
        };
        Some(format!("{scheme}://{}:{}", self.ip, p.patroni_port))
    }

    /// Pigsty's published default passwords this node's image would carry.
    pub fn default_passwords(&self) -> Vec<&'static str> {
        DEFAULT_PASSWORDS
            .iter()
            .filter(|(key, default)| self.password(key) == Some(*default))
            .map(|(key, _)| *key)
            .collect()
    }
}

/// The six Pigsty modules.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Module {
    Node,
    Infra,
    Etcd,
    Pgsql,
    Redis,
    Minio,
}

impl Module {
    pub fn as_str(self) -> &'static str {
        match self {
            Module::Node => "NODE",
            Module::Infra => "INFRA",
            Module::Etcd => "ETCD",
            Module::Pgsql => "PGSQL",
            Module::Redis => "REDIS",
            Module::Minio => "MINIO",
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole inventory, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// The inventory file as named to the user.
    pub source: String,
    pub nodes: Vec<Node>,
    /// Cluster members by cluster, for the queries every node's render makes.
    #[serde(skip)]
    members: MemberIndex,
}

/// Positions in [`Fleet::nodes`] of each PostgreSQL, etcd and MinIO cluster's members,
/// sorted by seq, built on the first query: a scan of the whole fleet per query made
/// rendering every node quadratic in the fleet's size. A clone starts empty, so a
/// clone whose nodes are then changed (certificates, a test's variant) is indexed anew;
/// a query checks that the fleet has as many nodes and the hits are still members, and
/// scans otherwise.
#[derive(Debug, Default)]
struct MemberIndex(std::sync::OnceLock<IndexMap>);

#[derive(Debug)]
struct IndexMap {
    /// How many nodes the fleet had.
    nodes: usize,
    clusters: HashMap<(Module, String), Vec<usize>>,
}

impl Clone for MemberIndex {
    fn clone(&self) -> Self {
        MemberIndex::default()
    }
}

/// One host and everything it runs.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub ip: Ipv4Addr,
    pub nodename: String,
    pub node_cluster: String,
    pub modules: BTreeSet<Module>,
    pub node: NodeParams,
    pub infra: Option<InfraMember>,
    pub etcd: Option<EtcdMember>,
    pub pg: Option<PgInstance>,
    pub minio: Option<MinioMember>,
    pub redis: Option<RedisNode>,
    /// Package repositories its image is built from, the base's archive first.
    pub repos: Vec<Repository>,
    /// Where the inventory defines this host and its variables.
    #[serde(skip)]
    pub source: NodeSource,
    /// The node's certificate from the fleet CA, once the PKI is opened
    /// (`build-image` creates it; `render` and `plan` use one that exists).
    #[serde(skip)]
    pub tls: Option<std::sync::Arc<NodeTls>>,
}

/// A node's key pair and certificate signed by the fleet CA, with the CA certificate
/// (PEM each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Where an inventory wrote one host: its key, and each variable it set for it
/// (the built-in defaults have no place). A value refused only when it is written
/// into a file is reported there.
#[derive(Debug, Clone, Default)]
pub struct NodeSource {
    pub host: crate::diag::Loc,
    /// Each variable set for the host: where, and the strings its value holds.
    pub vars: std::sync::Arc<BTreeMap<String, (crate::diag::Loc, Vec<String>)>>,
}

impl NodeSource {
    /// The variable a message is about, and where it is: the first word of the
    /// message that names a variable set for this host, else a variable holding a
    /// string the message quotes (`"a\nb"`, as a filter refusing it shows it); else
    /// the host key.
    pub fn locate(&self, message: &str) -> (Option<&str>, crate::diag::Loc) {
        let by_name = message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find_map(|word| self.vars.get_key_value(word));
        let by_value = || {
            self.vars.iter().find(|(_, (_, strings))| {
                strings
                    .iter()
                    .any(|s| s.len() > 1 && message.contains(&format!("{s:?}")))
            })
        };
        by_name
            .or_else(by_value)
            .map_or((None, self.host), |(k, (loc, _))| (Some(k.as_str()), *loc))
    }
}

/// A package repository an image is built from: an entry of Pigsty's
/// `repo_upstream` (or of the base's default list), resolved for the node's base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Repository {
    pub name: String,
    /// Pigsty's repository module (`node`, `pgsql`, `infra`, ...).
    pub module: String,
    pub uri: String,
    pub suite: String,
    #[serde(default)]
    pub components: Vec<String>,
    /// The key that signs it: `debian` (the host's archive keyring), a key of
    /// `images/keys/` (`pgdg`, `pigsty`), or the path of an armored key file.
    #[serde(default)]
    pub key: Option<String>,
    /// PostgreSQL majors it offers, where known.
    #[serde(default)]
    pub pg_versions: Vec<u32>,
}

impl Repository {
    /// The `deb` line apt reads (without options).
    pub fn deb_line(&self) -> String {
        let mut line = format!("deb {} {}", self.uri, self.suite);
        for c in &self.components {
            line.push(' ');
            line.push_str(c);
        }
        line
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InfraMember {
    pub seq: u32,
    pub name: String,
    pub params: InfraParams,
}

#[derive(Debug, Clone, Serialize)]
pub struct EtcdMember {
    pub cluster: String,
    pub seq: u32,
    pub name: String,
    pub params: EtcdParams,
}

#[derive(Debug, Clone, Serialize)]
pub struct PgInstance {
    pub cluster: String,
    pub seq: u32,
    pub role: PgRole,
    pub name: String,
    pub params: PgParams,
    /// Packages its extensions, libraries and `pg_packages` need on its base,
    /// resolved through the extension catalog at validation.
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MinioMember {
    pub cluster: String,
    pub seq: u32,
    pub name: String,
    /// `minio_node` with `${minio_seq}` left in place, for the volume expression.
    pub node_pattern: String,
    pub params: MinioParams,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisNode {
    pub cluster: String,
    pub node: u32,
    pub name: String,
    pub instances: BTreeMap<u16, RedisReplica>,
    pub params: RedisParams,
}

/// A redis instance with its upstream parsed from `replica_of: 'IP PORT'`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisReplica {
    pub name: String,
    pub replica_of: Option<(Ipv4Addr, u16)>,
}

/// The base whose pgbouncer exporter cannot read its pgbouncer: Debian 12's
/// prometheus-pgbouncer-exporter (1.7) fails on pgbouncer 1.18's `SHOW STATS`
/// (`KeyError: 'total_requests'`), and no other is packaged for it.
pub const NO_PGBOUNCER_EXPORTER_BASE: &str = "debian12";

impl Node {
    /// Whether this node runs haproxy: `haproxy_enabled` on a PGSQL node (its
    /// cluster's services) or on any node with `haproxy_services`.
    pub fn haproxy(&self) -> bool {
        self.node.haproxy_enabled.0
            && (self.pg.is_some() || self.haproxy_services().next().is_some())
    }

    /// The `haproxy_services` this node's image builds: all of them with the fleet CA
    /// (every `build-image` has one). Those that name the CA's files (Pigsty's MinIO
    /// service checks with `ca-file /etc/pki/ca.crt`) are left out of a render
    /// without it, with a warning: haproxy would refuse the whole config.
    pub fn haproxy_services(&self) -> impl Iterator<Item = &HaproxyService> {
        self.node
            .haproxy_services
            .iter()
            .filter(|s| self.tls.is_some() || !s.needs_fleet_ca())
    }

    /// Whether this node receives the fleet's logs (`vlogs_enabled` on an infra node):
    /// systemd-journal-remote on `vlogs_port`, where Pigsty runs VictoriaLogs.
    pub fn log_receiver(&self) -> Option<u16> {
        self.infra
            .as_ref()
            .filter(|i| i.params.vlogs_enabled.0)
            .map(|i| i.params.vlogs_port)
    }

    /// Whether this node's log receiver is VictoriaLogs, as Pigsty's: a receiving
    /// infra node built from Pigsty's `infra` repository, which packages it (Debian
    /// does not). Without it, systemd-journal-remote receives.
    pub fn victoria_logs(&self) -> bool {
        self.log_receiver().is_some() && grafana_repo(&self.repos).is_some()
    }

    /// Whether this node runs Grafana: an infra node with `grafana_enabled`, built from
    /// the repository Grafana comes from ([`grafana_repo`]).
    pub fn grafana(&self) -> bool {
        self.infra
            .as_ref()
            .is_some_and(|i| i.params.grafana_enabled.0)
            && grafana_repo(&self.repos).is_some()
    }

    /// Whether this node runs Debian's pgbouncer exporter (`pgbouncer_exporter_enabled`
    /// on a node with pgbouncer, on a base whose exporter works).
    pub fn pgbouncer_exporter(&self) -> bool {
        self.pg.as_ref().is_some_and(|pg| {
            pg.params.pgbouncer_enabled.0 && pg.params.pgbouncer_exporter_enabled.0
        }) && self.node.node_base != NO_PGBOUNCER_EXPORTER_BASE
    }

    /// Every name this node answers to, for `--role` (nodename first).
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.nodename.clone()];
        let mut add = |n: &str| {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        };
        if let Some(pg) = &self.pg {
            add(&pg.name);
        }
        if let Some(e) = &self.etcd {
            add(&e.name);
        }
        if let Some(m) = &self.minio {
            add(&m.name);
        }
        if let Some(i) = &self.infra {
            add(&i.name);
        }
        if let Some(r) = &self.redis {
            add(&r.name);
            for inst in r.instances.values() {
                add(&inst.name);
            }
        }
        add(&self.ip.to_string());
        names
    }

    /// Short role labels for listings: `pg-test-1(primary)`, `etcd-1`, ...
    pub fn roles(&self) -> Vec<String> {
        let mut roles = Vec::new();
        if let Some(i) = &self.infra {
            roles.push(i.name.clone());
        }
        if let Some(e) = &self.etcd {
            roles.push(e.name.clone());
        }
        if let Some(m) = &self.minio {
            roles.push(m.name.clone());
        }
        if let Some(pg) = &self.pg {
            roles.push(format!("{}({})", pg.name, serde_plain(&pg.role)));
        }
        if let Some(r) = &self.redis {
            roles.push(format!("{}({})", r.name, serde_plain(&r.params.redis_mode)));
        }
        roles
    }
}

/// The serde name of a unit enum variant (`primary`, `standalone`).
/// The netmask of an IPv4 prefix length (`24` → `0xffffff00`; over 32 is 32).
pub fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

pub fn serde_plain<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The `pgbackrest_method` whose repository is on each member's own disk (Pigsty's
/// `local`): every member makes its stanza there, and no member restores from it.
pub const LOCAL_BACKUP_REPO: &str = "local";

/// Pushgateway's port on an infra node (Pigsty 3 had no parameter for it).
pub const PUSHGATEWAY_PORT: u16 = 9091;

/// The port an infra node serves the fleet's logs on: Debian's
/// systemd-journal-gatewayd socket.
pub const LOG_READER_PORT: u16 = 19531;

/// The repository Grafana comes from: Pigsty's `infra` module, as Pigsty installs it.
pub fn grafana_repo(repos: &[Repository]) -> Option<&Repository> {
    repos.iter().find(|r| r.module == "infra")
}

impl Fleet {
    pub fn new(source: String, nodes: Vec<Node>) -> Fleet {
        Fleet {
            source,
            nodes,
            members: MemberIndex::default(),
        }
    }

    /// Where a node ships its journal (`vector_enabled`, Pigsty's `vector_log_endpoint:
    /// [infra]`), as the instance names of its upload unit: `ip:port` of every infra
    /// node that receives logs, in the fleet's order, with VictoriaLogs' journald path
    /// (`ip:port-insert-journald`, which the unit's `%I` reads as
    /// `ip:port/insert/journald`) where the receiver runs VictoriaLogs. Empty for a
    /// node that ships none.
    pub fn log_receivers(&self, node: &Node) -> Vec<String> {
        if !node.node.vector_enabled.0 {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter_map(|n| {
                let port = n.log_receiver()?;
                let path = if n.victoria_logs() {
                    "-insert-journald"
                } else {
                    ""
                };
                Some(format!("{}:{port}{path}", n.ip))
            })
            .collect()
    }

    /// Find the node answering to `name` (any of [`Node::names`]).
    pub fn find(&self, name: &str) -> Result<&Node, LookupError> {
        let hits: Vec<&Node> = self
            .nodes
            .iter()
            .filter(|n| n.names().iter().any(|x| x == name))
            .collect();
        match hits.as_slice() {
            [one] => Ok(one),
            [] => {
                let all: Vec<String> = self.nodes.iter().flat_map(Node::names).collect();
                let hint = crate::diag::did_you_mean(name, all.iter().map(String::as_str))
                    .map(str::to_string);
                Err(LookupError::NotFound {
                    name: name.to_string(),
                    hint,
                })
            }
            many => Err(LookupError::Ambiguous {
                name: name.to_string(),
                nodes: many.iter().map(|n| n.ip.to_string()).collect(),
            }),
        }
    }

    /// Members of an etcd cluster, sorted by seq.
    pub fn etcd_members(&self, cluster: &str) -> Vec<&Node> {
        self.members(Module::Etcd, cluster)
    }

    /// Members of a MinIO cluster, sorted by seq.
    pub fn minio_members(&self, cluster: &str) -> Vec<&Node> {
        self.members(Module::Minio, cluster)
    }

    /// `MINIO_VOLUMES` for a MinIO cluster: every member starts with the identical
    /// list. A single node serves `minio_data` directly; several nodes use MinIO's
    /// ellipsis syntax, `https://minio-{1...3}.pigsty:9000/data{1...2}` (http without
    /// `minio_https`).
    pub fn minio_volumes(&self, cluster: &str) -> Option<String> {
        let members = self.minio_members(cluster);
        let scheme = if members.first()?.minio_https() {
            "https"
        } else {
            "http"
        };
        let first = members.first()?.minio.as_ref()?;
        let last = members.last()?.minio.as_ref()?;
        let p = &first.params;
        if members.len() == 1 {
            return Some(p.minio_data.clone());
        }
        let range = format!("{{{}...{}}}", first.seq, last.seq);
        let host = first.node_pattern.replace("${minio_seq}", &range);
        Some(format!(
            "{scheme}://{host}:{}{}",
            p.minio_port, p.minio_data
        ))
    }

    /// Instances of a PostgreSQL cluster, sorted by seq.
    pub fn pg_members(&self, cluster: &str) -> Vec<&Node> {
        self.members(Module::Pgsql, cluster)
    }

    fn members(&self, module: Module, cluster: &str) -> Vec<&Node> {
        let index = self.members.0.get_or_init(|| index_members(&self.nodes));
        let is_member = |n: &&Node| member_seq(n, module, cluster).is_some();
        if index.nodes == self.nodes.len() {
            let at = index.clusters.get(&(module, cluster.to_string()));
            let hits: Vec<&Node> = at
                .into_iter()
                .flatten()
                .filter_map(|&i| self.nodes.get(i))
                .filter(is_member)
                .collect();
            if hits.len() == at.map_or(0, Vec::len) {
                return hits;
            }
        }
        // Nodes changed since the index was built: a scan.
        let mut hits: Vec<&Node> = self.nodes.iter().filter(is_member).collect();
        hits.sort_by_key(|n| member_seq(n, module, cluster));
        hits
    }
}

/// The seq of `node` in `cluster` of `module` (PGSQL, ETCD or MINIO), if a member.
fn member_seq(node: &Node, module: Module, cluster: &str) -> Option<u32> {
    match module {
        Module::Pgsql => node
            .pg
            .as_ref()
            .filter(|p| p.cluster == cluster)
            .map(|p| p.seq),
        Module::Etcd => node
            .etcd
            .as_ref()
            .filter(|e| e.cluster == cluster)
            .map(|e| e.seq),
        Module::Minio => node
            .minio
            .as_ref()
            .filter(|m| m.cluster == cluster)
            .map(|m| m.seq),
        _ => None,
    }
}

fn index_members(nodes: &[Node]) -> IndexMap {
    let mut clusters: HashMap<(Module, String), Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let of = [
            n.pg.as_ref().map(|p| (Module::Pgsql, &p.cluster)),
            n.etcd.as_ref().map(|e| (Module::Etcd, &e.cluster)),
            n.minio.as_ref().map(|m| (Module::Minio, &m.cluster)),
        ];
        for (module, cluster) in of.into_iter().flatten() {
            clusters
                .entry((module, cluster.clone()))
                .or_default()
                .push(i);
        }
    }
    for ((module, cluster), at) in clusters.iter_mut() {
        at.sort_by_key(|&i| member_seq(&nodes[i], *module, cluster));
    }
    IndexMap {
        nodes: nodes.len(),
        clusters,
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error("no node answers to `{name}`{}", .hint.as_ref().map(|h| format!("; did you mean `{h}`?")).unwrap_or_default())]
    NotFound { name: String, hint: Option<String> },
    #[error("`{name}` names several nodes: {}", .nodes.join(", "))]
    Ambiguous { name: String, nodes: Vec<String> },
}
