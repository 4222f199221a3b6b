//! Typed Pigsty parameters per module. Each struct lists the variables it reads; their
//! defaults live in `defaults.yml`, so a field is `Option` only where Pigsty has none.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// Where a parameter struct reads its variables from: one host's resolved variables
/// (the inventory's `VarReader`). The model says what it needs; the inventory, which
/// knows YAML, scopes and placeholders, provides it, so the model depends on nothing
/// above it.
pub(crate) trait VarSource {
    /// The variable `key` as `T`; a missing or invalid value is reported by the
    /// source and gives `None`.
    fn get<T: DeserializeOwned + Clone + 'static>(&mut self, key: &str) -> Option<T>;
}

/// Declare a parameter struct whose fields are read from the node's variables by name.
macro_rules! params {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name { $($(#[$fm])* pub $field: $ty,)* }

        impl $name {
            /// The inventory variables this struct reads.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Read every field, reporting each bad one; `None` if any was bad.
            pub(crate) fn read(r: &mut impl VarSource) -> Option<Self> {
                $(let $field = r.get::<$ty>(stringify!($field));)*
                Some(Self { $($field: $field?,)* })
            }
        }
    };
}

params! {
    /// NODE: every host.
    pub struct NodeParams {
        admin_ip: Ipv4Addr,
        region: String,
        node_id_from_pg: Flag,
        node_mac: Option<String>,
        node_ip_prefix: u8,
        node_gateway: Option<Ipv4Addr>,
        node_timezone: String,
        node_ntp_enabled: Flag,
        node_ntp_servers: Vec<String>,
        node_dns_servers: Vec<String>,
        node_default_etc_hosts: Vec<String>,
        node_etc_hosts: Vec<String>,
        node_tune: NodeTune,
        node_sysctl_params: BTreeMap<String, Scalar>,
        node_packages: Vec<String>,
        node_admin_enabled: Flag,
        node_admin_uid: u32,
        node_admin_username: String,
        node_admin_pk_list: Vec<String>,
        node_exporter_enabled: Flag,
        node_exporter_port: u16,
        node_crontab: Vec<String>,
    }
}

params! {
    /// INFRA: members of the `infra` group.
    pub struct InfraParams {
        nginx_port: u16,
        nginx_ssl_port: u16,
        prometheus_port: u16,
        alertmanager_port: u16,
        grafana_admin_username: String,
        grafana_admin_password: String,
        infra_portal: BTreeMap<String, serde_json::Value>,
    }
}

params! {
    /// ETCD: members of the `etcd` group.
    pub struct EtcdParams {
        etcd_port: u16,
        etcd_peer_port: u16,
        etcd_data: String,
        etcd_safeguard: Flag,
        etcd_root_password: String,
        etcd_election_timeout: u32,
        etcd_heartbeat_interval: u32,
    }
}

params! {
    /// MINIO: hosts with `minio_cluster`.
    pub struct MinioParams {
        minio_server_bin: String,
        minio_user: String,
        minio_node: String,
        minio_data: String,
        minio_domain: String,
        minio_port: u16,
        minio_admin_port: u16,
        minio_access_key: String,
        minio_secret_key: String,
        minio_buckets: Vec<MinioBucket>,
        minio_users: Vec<MinioUser>,
    }
}

params! {
    /// REDIS: hosts with `redis_cluster`.
    pub struct RedisParams {
        redis_mode: RedisMode,
        redis_conf: String,
        redis_bind_address: String,
        redis_max_memory: String,
        redis_mem_policy: String,
        redis_password: String,
        redis_rdb_save: Vec<String>,
        redis_aof_enabled: Flag,
        redis_cluster_replicas: u32,
        redis_sentinel_monitor: Vec<RedisSentinelMonitor>,
        redis_exporter_port: u16,
    }
}

params! {
    /// PGSQL: hosts with `pg_cluster`.
    pub struct PgParams {
        pg_upstream: Option<Ipv4Addr>,
        pg_offline_query: Flag,
        pg_weight: u32,
        pg_version: u32,
        pg_port: u16,
        pg_listen: String,
        pg_namespace: String,
        pg_data: String,
        pg_fs_main: String,
        pg_dbsu: String,
        pg_dbsu_uid: u32,
        pg_conf: PgConf,
        pg_rto: PgRto,
        pg_rpo: u64,
        pg_checksum: Flag,
        pg_encoding: String,
        pg_locale: String,
        pg_lc_collate: String,
        pg_lc_ctype: String,
        pg_libs: String,
        pg_parameters: BTreeMap<String, Scalar>,
        pg_extensions: Vec<serde_json::Value>,
        patroni_enabled: Flag,
        patroni_mode: String,
        patroni_port: u16,
        patroni_username: String,
        patroni_password: String,
        patroni_watchdog_mode: Scalar,
        pg_admin_username: String,
        pg_admin_password: String,
        pg_monitor_username: String,
        pg_monitor_password: String,
        pg_replication_username: String,
        pg_replication_password: String,
        pg_users: Vec<PgUser>,
        pg_databases: Vec<PgDatabase>,
        pg_default_roles: Vec<PgUser>,
        pg_hba_rules: Vec<HbaRule>,
        pg_default_hba_rules: Vec<HbaRule>,
        pgb_hba_rules: Vec<HbaRule>,
        pgb_default_hba_rules: Vec<HbaRule>,
        pg_services: Vec<PgService>,
        pg_default_services: Vec<PgService>,
        pg_default_service_dest: String,
        pg_vip_enabled: Flag,
        pg_vip_address: String,
        pg_vip_interface: String,
        pgbouncer_enabled: Flag,
        pgbouncer_port: u16,
        pgbouncer_poolmode: String,
        pgbouncer_auth_query: Flag,
        pgbouncer_sslmode: String,
        pg_exporter_port: u16,
        pgbouncer_exporter_port: u16,
        haproxy_enabled: Flag,
        haproxy_exporter_port: u16,
        haproxy_admin_username: String,
        haproxy_admin_password: String,
        haproxy_client_timeout: String,
        haproxy_server_timeout: String,
        pgbackrest_enabled: Flag,
        pgbackrest_method: String,
        pgbackrest_repo: BTreeMap<String, BackrestRepo>,
    }
}

/// All parameter names the typed model reads.
pub fn typed_keys() -> impl Iterator<Item = &'static str> {
    [
        NodeParams::KEYS,
        InfraParams::KEYS,
        EtcdParams::KEYS,
        MinioParams::KEYS,
        RedisParams::KEYS,
        PgParams::KEYS,
        super::IDENTITY_KEYS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// A boolean as Ansible reads one: YAML booleans, and the strings `yes`/`no`/`on`/`off`/
/// `true`/`false` (any case), as Jinja's `bool` filter accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
            I(i64),
        }
        let expected = "a boolean (true/false, yes/no, on/off)";
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom(format!("expected {expected}")))?
        {
            Raw::B(b) => Ok(Flag(b)),
            Raw::I(0) => Ok(Flag(false)),
            Raw::I(1) => Ok(Flag(true)),
            Raw::S(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "on" | "true" | "y" | "1" => Ok(Flag(true)),
                "no" | "off" | "false" | "n" | "0" => Ok(Flag(false)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected {expected}, found `{s}`"
                ))),
            },
            Raw::I(i) => Err(serde::de::Error::custom(format!(
                "expected {expected}, found {i}"
            ))),
        }
    }
}

/// A scalar configuration value (sysctl, postgres parameter): kept as text for rendering.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Scalar(s)),
            serde_json::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Scalar(if b { "on" } else { "off" }.into())),
            other => Err(serde::de::Error::custom(format!(
                "expected a scalar value, found {}",
                json_type(&other)
            ))),
        }
    }
}

pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgRole {
    Primary,
    Replica,
    Standby,
    Offline,
    Delayed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    Standalone,
    Cluster,
    Sentinel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeTune {
    Oltp,
    Olap,
    Crit,
    Tiny,
}

/// `pg_conf`: the PostgreSQL parameter template. v3 writes `oltp.yml`, v4 may drop `.yml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PgConf {
    Oltp,
    Olap,
    Crit,
    Tiny,
}

impl<'de> Deserialize<'de> for PgConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.strip_suffix(".yml").unwrap_or(&s) {
            "oltp" => Ok(PgConf::Oltp),
            "olap" => Ok(PgConf::Olap),
            "crit" => Ok(PgConf::Crit),
            "tiny" => Ok(PgConf::Tiny),
            _ => Err(serde::de::Error::custom(format!(
                "unknown template `{s}`, expected one of oltp.yml, olap.yml, crit.yml, tiny.yml"
            ))),
        }
    }
}

/// Patroni failover timings derived from `pg_rto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RtoTimings {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
    pub primary_start_timeout: u32,
    pub safety_margin: u32,
}

/// `pg_rto`: a v4 plan name (`fast`, `norm`, `safe`, `wide`) or v3 seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PgRto {
    Plan(String),
    Seconds(u32),
}

impl PgRto {
    pub fn timings(&self) -> RtoTimings {
        let t = |ttl, loop_wait, retry_timeout, primary_start_timeout, safety_margin| RtoTimings {
            ttl,
            loop_wait,
            retry_timeout,
            primary_start_timeout,
            safety_margin,
        };
        match self {
            PgRto::Plan(p) => match p.as_str() {
                "fast" => t(20, 5, 5, 15, 5),
                "safe" => t(60, 10, 20, 45, 10),
                "wide" => t(120, 20, 30, 95, 15),
                _ => t(30, 5, 10, 25, 5),
            },
            PgRto::Seconds(s) => {
                let third = (s / 3).max(1);
                t(*s, third, third, third, third)
            }
        }
    }
}

impl<'de> Deserialize<'de> for PgRto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(s) if s >= 3 => Ok(PgRto::Seconds(s)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected seconds (an integer >= 3) or one of fast, norm, safe, wide, found {n}"
                ))),
            },
            serde_json::Value::String(s)
                if ["fast", "norm", "safe", "wide"].contains(&s.as_str()) =>
            {
                Ok(PgRto::Plan(s))
            }
            other => Err(serde::de::Error::custom(format!(
                "expected one of fast, norm, safe, wide (v4) or seconds (v3), found {}",
                match &other {
                    serde_json::Value::String(s) => format!("`{s}`"),
                    v => json_type(v).to_string(),
                }
            ))),
        }
    }
}

/// A PostgreSQL role from `pg_users` / `pg_default_roles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<Scalar>,
    #[serde(default)]
    pub login: Option<Flag>,
    #[serde(default)]
    pub superuser: Option<Flag>,
    #[serde(default)]
    pub createdb: Option<Flag>,
    #[serde(default)]
    pub createrole: Option<Flag>,
    #[serde(default)]
    pub inherit: Option<Flag>,
    #[serde(default)]
    pub replication: Option<Flag>,
    #[serde(default)]
    pub bypassrls: Option<Flag>,
    #[serde(default)]
    pub connlimit: Option<i64>,
    #[serde(default)]
    pub expire_in: Option<u32>,
    #[serde(default)]
    pub expire_at: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub pgbouncer: Option<Flag>,
    #[serde(default)]
    pub pool_mode: Option<String>,
    #[serde(default)]
    pub pool_connlimit: Option<i64>,
    /// Fields we do not interpret yet, kept so nothing of the inventory is lost.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A database from `pg_databases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgDatabase {
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub lc_collate: Option<String>,
    #[serde(default)]
    pub lc_ctype: Option<String>,
    #[serde(default)]
    pub tablespace: Option<String>,
    #[serde(default)]
    pub allowconn: Option<Flag>,
    #[serde(default)]
    pub revokeconn: Option<Flag>,
    #[serde(default)]
    pub connlimit: Option<i64>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub extensions: Vec<Extension>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub pgbouncer: Option<Flag>,
    #[serde(default)]
    pub pool_mode: Option<String>,
    #[serde(default)]
    pub pool_size: Option<u32>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A database extension: `postgis` or `{ name: postgis, schema: public }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    pub name: String,
    pub schema: Option<String>,
}

impl<'de> Deserialize<'de> for Extension {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Full {
                name: String,
                schema: Option<String>,
            },
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected an extension name or { name, schema }")
        })? {
            Raw::Name(name) => Ok(Extension { name, schema: None }),
            Raw::Full { name, schema } => Ok(Extension { name, schema }),
        }
    }
}

/// An HBA rule: Pigsty's alias form (`user/db/addr/auth`) or raw lines (`rules`, as
/// Pigsty spells it; `lines` is accepted too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HbaRule {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub db: Option<String>,
    #[serde(default)]
    pub addr: Option<String>,
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default, alias = "rules")]
    pub lines: Vec<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub order: Option<i64>,
}

/// A haproxy service from `pg_default_services` / `pg_services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgService {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub dest: Option<String>,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub backup: Option<String>,
    #[serde(default)]
    pub maxconn: Option<u32>,
    #[serde(default)]
    pub balance: Option<String>,
    #[serde(default)]
    pub options: Option<String>,
}

/// A pgBackRest repository definition (`pgbackrest_repo.<name>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackrestRepo {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(flatten)]
    pub options: BTreeMap<String, Scalar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioBucket {
    pub name: String,
    #[serde(default)]
    pub versioning: Option<Flag>,
    #[serde(default)]
    pub lock: Option<Flag>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinioUser {
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub policy: Option<String>,
}

/// A primary that a redis sentinel watches (`redis_sentinel_monitor` items):
/// `{ name: redis-ms, host: 10.10.10.10, port: 6379, password: redis.ms, quorum: 2 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisSentinelMonitor {
    pub name: String,
    /// An address or a host name (sentinel then resolves host names).
    pub host: String,
    pub port: u16,
    /// The primary's `requirepass`; empty or absent when it has none.
    #[serde(default)]
    pub password: Option<Scalar>,
    /// Sentinels that must agree the primary is down; redis refuses 0.
    #[serde(default = "one")]
    pub quorum: std::num::NonZeroU32,
}

fn one() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::MIN
}

/// One redis instance: `6380: { replica_of: '10.10.10.10 6379' }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RedisInstance {
    #[serde(default)]
    pub replica_of: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_plans_and_seconds() {
        let norm: PgRto = serde_json::from_str("\"norm\"").unwrap();
        assert_eq!(norm.timings().ttl, 30);
        assert_eq!(norm.timings().primary_start_timeout, 25);
        let v3: PgRto = serde_json::from_str("30").unwrap();
        assert_eq!(
            v3.timings(),
            RtoTimings {
                ttl: 30,
                loop_wait: 10,
                retry_timeout: 10,
                primary_start_timeout: 10,
                safety_margin: 10
            }
        );
        assert!(serde_json::from_str::<PgRto>("\"quick\"").is_err());
        assert!(serde_json::from_str::<PgRto>("1").is_err());
    }

    #[test]
    fn flags_accept_ansible_spellings() {
        for (s, b) in [
            ("true", true),
            ("\"yes\"", true),
            ("\"Off\"", false),
            ("0", false),
        ] {
            assert_eq!(serde_json::from_str::<Flag>(s).unwrap(), Flag(b), "{s}");
        }
        assert!(serde_json::from_str::<Flag>("\"maybe\"").is_err());
    }

    #[test]
    fn pg_conf_with_or_without_suffix() {
        assert_eq!(
            serde_json::from_str::<PgConf>("\"olap.yml\"").unwrap(),
            PgConf::Olap
        );
        assert_eq!(
            serde_json::from_str::<PgConf>("\"tiny\"").unwrap(),
            PgConf::Tiny
        );
        assert!(serde_json::from_str::<PgConf>("\"web.yml\"").is_err());
    }
}
