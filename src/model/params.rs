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
        node_base: String,
        node_repo_modules: String,
        repo_modules: String,
        repo_upstream: Option<Vec<serde_json::Value>>,
        region: String,
        node_id_from_pg: Flag,
        node_mac: Option<String>,
        node_disk: Option<String>,
        node_ip_prefix: u8,
        node_gateway: Option<Ipv4Addr>,
        node_timezone: String,
        node_ntp_enabled: Flag,
        node_ntp_servers: Vec<String>,
        node_dns_method: NodeDnsMethod,
        node_dns_servers: Vec<String>,
        node_dns_options: Vec<String>,
        node_default_etc_hosts: Vec<String>,
        node_etc_hosts: Vec<String>,
        node_tune: NodeTune,
        node_overcommit_ratio: u32,
        node_sysctl_params: BTreeMap<String, Scalar>,
        node_packages: Vec<String>,
        node_admin_enabled: Flag,
        node_admin_uid: u32,
        node_admin_username: String,
        node_admin_pk_list: Vec<String>,
        node_exporter_enabled: Flag,
        vector_enabled: Flag,
        node_exporter_port: u16,
        node_crontab: Vec<String>,
        node_crontab_overwrite: Flag,
        vip_enabled: Flag,
        vip_address: Option<Ipv4Addr>,
        vip_vrid: Option<u8>,
        vip_role: VipRole,
        vip_preempt: Flag,
        vip_interface: String,
        vip_auth_pass: String,
        haproxy_enabled: Flag,
        haproxy_exporter_port: u16,
        haproxy_admin_username: String,
        haproxy_admin_password: String,
        haproxy_client_timeout: String,
        haproxy_server_timeout: String,
        haproxy_services: Vec<HaproxyService>,
    }
}

/// `vip_role`: the VRRP state a node's keepalived starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VipRole {
    #[serde(alias = "MASTER")]
    Master,
    #[serde(alias = "BACKUP")]
    Backup,
}

params! {
    /// INFRA: members of the `infra` group.
    pub struct InfraParams {
        nginx_port: u16,
        nginx_ssl_port: u16,
        prometheus_port: u16,
        vmetrics_scrape_interval: String,
        vmetrics_scrape_timeout: String,
        alertmanager_port: u16,
        blackbox_enabled: Flag,
        blackbox_port: u16,
        blackbox_options: String,
        vlogs_enabled: Flag,
        vlogs_port: u16,
        vlogs_options: String,
        pushgateway_enabled: Flag,
        pushgateway_options: String,
        grafana_enabled: Flag,
        grafana_port: u16,
        language: String,
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
        minio_https: Flag,
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
        redis_exporter_enabled: Flag,
        redis_exporter_port: u16,
        redis_exporter_options: String,
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
        pg_etcd_password: String,
        pg_data: String,
        pg_fs_main: String,
        pg_dbsu: String,
        pg_dbsu_uid: u32,
        pg_conf: PgConf,
        pg_io_method: IoMethod,
        pg_max_conn: PgMaxConn,
        pg_shared_buffer_ratio: BufferRatio,
        pg_rto: PgRto,
        pg_rto_plan: BTreeMap<String, RtoPlan>,
        pg_rpo: u64,
        pg_checksum: Flag,
        pg_encoding: String,
        pg_locale: String,
        pg_lc_collate: String,
        pg_lc_ctype: String,
        pg_libs: String,
        pg_parameters: BTreeMap<String, Scalar>,
        pg_packages: Vec<String>,
        pg_crontab: Vec<String>,
        pg_extensions: Vec<serde_json::Value>,
        patroni_enabled: Flag,
        patroni_mode: String,
        patroni_port: u16,
        patroni_ssl_enabled: Flag,
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
        pg_default_privileges: Vec<DefaultPrivilege>,
        pg_default_schemas: Vec<Schema>,
        pg_default_extensions: Vec<Extension>,
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
        pgbouncer_exporter_enabled: Flag,
        pgbouncer_exporter_port: u16,
        pgbouncer_exporter_options: String,
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

/// `node_dns_method`: how `/etc/resolv.conf` is made. An image has no earlier
/// resolver to keep, so `add` and `overwrite` both write `node_dns_options` and
/// `node_dns_servers`; `none` leaves the file to whatever the node is given at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeDnsMethod {
    Add,
    Overwrite,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeTune {
    Oltp,
    Olap,
    Crit,
    Tiny,
    /// Leave the kernel's settings alone.
    None,
}

/// `pg_io_method` (PostgreSQL 18's `io_method`): `auto` is Pigsty's choice for the
/// node's OS (io_uring on Debian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoMethod {
    Auto,
    Sync,
    Worker,
    IoUring,
}

impl IoMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            IoMethod::Auto => "auto",
            IoMethod::Sync => "sync",
            IoMethod::Worker => "worker",
            IoMethod::IoUring => "io_uring",
        }
    }
}

/// `pg_max_conn`: `auto` (the template's choice) or a number of connections. Pigsty
/// quietly reads a number under 20 as `auto`; here it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgMaxConn {
    Auto,
    Fixed(u32),
}

impl Serialize for PgMaxConn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PgMaxConn::Auto => s.serialize_str("auto"),
            PgMaxConn::Fixed(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for PgMaxConn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let n = match &v {
            serde_json::Value::String(s) if s == "auto" => return Ok(PgMaxConn::Auto),
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        };
        match n {
            Some(n @ 20..=262_143) => Ok(PgMaxConn::Fixed(n as u32)),
            Some(n) if n < 20 => Err(serde::de::Error::custom(format!(
                "{n} connections is under 20, which Pigsty reads as `auto`: write `auto`, or 20 or more"
            ))),
            Some(n) => Err(serde::de::Error::custom(format!(
                "{n} connections is over PostgreSQL's limit of 262143"
            ))),
            None => Err(serde::de::Error::custom(format!(
                "expected `auto` or a number of connections, found {}",
                json_type(&v)
            ))),
        }
    }
}

/// `pg_shared_buffer_ratio`: the share of memory for shared_buffers, 0.1 to 0.4 (the
/// range Pigsty documents; it does not check it, here it is refused outside).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct BufferRatio(pub f64);

impl<'de> Deserialize<'de> for BufferRatio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let r = match &v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match r {
            Some(r) if (0.1..=0.4).contains(&r) => Ok(BufferRatio(r)),
            Some(r) => Err(serde::de::Error::custom(format!(
                "{r} is outside 0.1 to 0.4 (the share of memory for shared_buffers)"
            ))),
            None => Err(serde::de::Error::custom(format!(
                "expected a ratio such as 0.25, found {}",
                json_type(&v)
            ))),
        }
    }
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

/// HAProxy's health checks of Patroni, from a `pg_rto_plan` entry: intervals in
/// milliseconds (HAProxy 2.6 takes integer times only, so Pigsty's `0.5s` is 500 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HealthChecks {
    pub inter_ms: u32,
    pub fastinter_ms: u32,
    pub downinter_ms: u32,
    pub rise: u32,
    pub fall: u32,
}

/// One entry of `pg_rto_plan`: `[ttl, loop, retry, start, margin, inter, fastinter,
/// downinter, rise, fall]`, the first five Patroni's (seconds), the rest HAProxy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RtoPlan {
    pub patroni: RtoTimings,
    pub checks: HealthChecks,
}

impl<'de> Deserialize<'de> for RtoPlan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let items = Vec::<serde_json::Value>::deserialize(d)?;
        if items.len() != 10 {
            return Err(D::Error::custom(format!(
                "expected 10 items [ttl, loop, retry, start, margin, inter, fastinter, downinter, rise, fall], found {}",
                items.len()
            )));
        }
        const NAMES: [&str; 10] = [
            "ttl",
            "loop",
            "retry",
            "start",
            "margin",
            "inter",
            "fastinter",
            "downinter",
            "rise",
            "fall",
        ];
        let int = |i: usize| -> Result<u32, D::Error> {
            items[i]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "item {i} ({}) must be a positive integer, found {}",
                        NAMES[i], items[i]
                    ))
                })
        };
        let time = |i: usize| -> Result<u32, D::Error> {
            haproxy_time_ms(&items[i]).ok_or_else(|| {
                D::Error::custom(format!(
                    "item {i} ({}) must be a time like '2s' or '500ms', found {}",
                    NAMES[i], items[i]
                ))
            })
        };
        let plan = RtoPlan {
            patroni: RtoTimings {
                ttl: int(0)?,
                loop_wait: int(1)?,
                retry_timeout: int(2)?,
                primary_start_timeout: int(3)?,
                safety_margin: int(4)?,
            },
            checks: HealthChecks {
                inter_ms: time(5)?,
                fastinter_ms: time(6)?,
                downinter_ms: time(7)?,
                rise: int(8)?,
                fall: int(9)?,
            },
        };
        // Patroni would quietly shorten loop_wait and retry_timeout to fit the ttl.
        let t = plan.patroni;
        if t.loop_wait + 2 * t.retry_timeout > t.ttl {
            return Err(D::Error::custom(format!(
                "Patroni needs loop + 2 x retry <= ttl, found loop {} + 2 x retry {} > ttl {}",
                t.loop_wait, t.retry_timeout, t.ttl
            )));
        }
        Ok(plan)
    }
}

/// A HAProxy time (`2s`, `0.5s`, `500ms`, `1m`; a bare number is milliseconds) in
/// whole milliseconds, at least 1.
fn haproxy_time_ms(v: &serde_json::Value) -> Option<u32> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok().filter(|n| *n > 0);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "" | "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let ms = n * scale;
    (ms >= 1.0 && ms.fract() == 0.0 && ms <= f64::from(u32::MAX)).then_some(ms as u32)
}

/// `pg_rto`: the name of a `pg_rto_plan` entry (v4) or seconds (v3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PgRto {
    Plan(String),
    Seconds(u32),
}

impl PgParams {
    /// Patroni's timings under `pg_rto`. A plan name missing from `pg_rto_plan` is an
    /// inventory error (checked when it is read), so it cannot reach here.
    pub fn rto_timings(&self) -> RtoTimings {
        match &self.pg_rto {
            PgRto::Plan(name) => self
                .pg_rto_plan
                .get(name)
                .map_or(NORM.patroni, |p| p.patroni),
            PgRto::Seconds(s) => {
                let third = (s / 3).max(1);
                RtoTimings {
                    ttl: *s,
                    loop_wait: third,
                    retry_timeout: third,
                    primary_start_timeout: third,
                    safety_margin: third,
                }
            }
        }
    }

    /// HAProxy's checks under `pg_rto`; `None` for v3 seconds, whose checks are fixed.
    pub fn rto_checks(&self) -> Option<HealthChecks> {
        match &self.pg_rto {
            PgRto::Plan(name) => Some(self.pg_rto_plan.get(name).map_or(NORM.checks, |p| p.checks)),
            PgRto::Seconds(_) => None,
        }
    }
}

/// Pigsty's `norm` plan, as in defaults.yml.
const NORM: RtoPlan = RtoPlan {
    patroni: RtoTimings {
        ttl: 30,
        loop_wait: 5,
        retry_timeout: 10,
        primary_start_timeout: 25,
        safety_margin: 5,
    },
    checks: HealthChecks {
        inter_ms: 2000,
        fastinter_ms: 1000,
        downinter_ms: 2000,
        rise: 3,
        fall: 3,
    },
};

impl<'de> Deserialize<'de> for PgRto {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(s) if s >= 3 => Ok(PgRto::Seconds(s)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected seconds (an integer >= 3) or the name of a pg_rto_plan entry, found {n}"
                ))),
            },
            serde_json::Value::String(s) if !s.is_empty() => Ok(PgRto::Plan(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected the name of a pg_rto_plan entry (v4: fast, norm, safe, wide) or seconds (v3), found {}",
                match &other {
                    serde_json::Value::String(s) => format!("`{s}`"),
                    v => json_type(v).to_string(),
                }
            ))),
        }
    }
}

/// One crontab job line: `<schedule> [<user>] <command>`, where the schedule is five
/// fields (`00 01 * * *`) or an `@` keyword (`@daily`). `node_crontab` lines name
/// the user, as `/etc/crontab` does; `pg_crontab` lines do not (the dbsu's own).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CronJob {
    pub schedule: String,
    pub user: Option<String>,
    pub command: String,
}

impl CronJob {
    pub fn parse(line: &str, with_user: bool) -> Result<Self, String> {
        const KEYWORDS: &[&str] = &[
            "@reboot",
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        // (name, lowest, highest) of the five fields; names (jan, mon) are allowed.
        const FIELDS: [(&str, u32, u32); 5] = [
            ("minute", 0, 59),
            ("hour", 0, 23),
            ("day of month", 1, 31),
            ("month", 1, 12),
            ("day of week", 0, 7),
        ];
        if let Some(c) = line.chars().find(|c| c.is_control()) {
            return Err(format!(
                "a crontab line cannot hold the control character {c:?}"
            ));
        }
        let mut rest = line.trim();
        let mut next = || {
            let s = rest.trim_start();
            let end = s.find(char::is_whitespace).unwrap_or(s.len());
            let (word, tail) = s.split_at(end);
            rest = tail;
            word
        };
        let first = next();
        let schedule = if first.starts_with('@') {
            if !KEYWORDS.contains(&first.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "`{first}` is not a cron keyword ({})",
                    KEYWORDS.join(", ")
                ));
            }
            first.to_string()
        } else {
            let mut fields = vec![first];
            for _ in 1..5 {
                fields.push(next());
            }
            for (word, (name, lo, hi)) in fields.iter().zip(FIELDS) {
                check_cron_field(word, lo, hi).map_err(|why| {
                    format!("the {name} field `{word}` of `{line}` {why}; expected five schedule fields, as in `00 01 * * *`")
                })?;
            }
            fields.join(" ")
        };
        let user = if with_user {
            let u = next();
            let user_like =
                |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$');
            if u.is_empty() || !u.chars().all(user_like) {
                return Err(format!(
                    "`{line}` names no user (`{u}` is not a user name): /etc/crontab lines are `<schedule> <user> <command>`"
                ));
            }
            Some(u.to_string())
        } else {
            None
        };
        let command = rest.trim().to_string();
        if command.is_empty() {
            return Err(format!("`{line}` has no command"));
        }
        Ok(Self {
            schedule,
            user,
            command,
        })
    }

    /// The line for an `/etc/cron.d` file or `/etc/crontab`, run as `user`.
    pub fn line_as(&self, user: &str) -> String {
        format!("{} {user} {}", self.schedule, self.command)
    }
}

fn check_cron_field(word: &str, lo: u32, hi: u32) -> Result<(), &'static str> {
    if word.is_empty() {
        return Err("is missing");
    }
    for part in word.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(s) = step
            && (s.parse::<u32>().map_or(true, |n| n == 0))
        {
            return Err("has a step that is not a positive number");
        }
        if range == "*" {
            continue;
        }
        for bound in range.split('-') {
            if bound.chars().all(|c| c.is_ascii_alphabetic()) && bound.len() == 3 {
                continue; // jan..dec, sun..sat: cron checks the names themselves
            }
            match bound.parse::<u32>() {
                Ok(n) if (lo..=hi).contains(&n) => {}
                Ok(_) => return Err("is out of range"),
                Err(_) => return Err("is not a number, range, list or `*`"),
            }
        }
    }
    Ok(())
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
    pub schemas: Vec<Schema>,
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
    /// An SQL file applied once, when the database is created (Pigsty's `files/`).
    #[serde(default)]
    pub baseline: Option<String>,
    /// The baseline file's text, read by the inventory from beside the inventory file.
    #[serde(skip)]
    pub baseline_sql: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A database extension: `postgis` or `{ name: postgis, schema: public, version: '3.5',
/// state: absent }` (Pigsty's keys; `state: absent` drops it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extension {
    pub name: String,
    pub schema: Option<String>,
    pub version: Option<String>,
    /// `state: absent`: `DROP EXTENSION IF EXISTS ... CASCADE` instead of creating it.
    pub absent: bool,
}

/// The two forms Pigsty allows for a named item: a bare name, or a mapping of its
/// fields (`T`). `what` names the mapping's keys for the error message.
fn name_or<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    what: &str,
) -> Result<Result<String, T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw<T> {
        Name(String),
        Full(T),
    }
    match Raw::deserialize(d) {
        Ok(Raw::Name(name)) => Ok(Ok(name)),
        Ok(Raw::Full(t)) => Ok(Err(t)),
        Err(_) => Err(serde::de::Error::custom(format!("expected {what}"))),
    }
}

impl<'de> Deserialize<'de> for Extension {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            name: String,
            schema: Option<String>,
            version: Option<Scalar>,
            state: Option<String>,
        }
        let what = "an extension name or { name, schema, version, state }";
        Ok(match name_or::<D, Full>(d, what)? {
            Ok(name) => Extension {
                name,
                schema: None,
                version: None,
                absent: false,
            },
            Err(f) => Extension {
                name: f.name,
                schema: f.schema,
                version: f.version.map(|v| v.0),
                absent: absent(f.state.as_deref()).map_err(serde::de::Error::custom)?,
            },
        })
    }
}

/// Pigsty's `state` key: `present` (the default) or `absent`.
fn absent(state: Option<&str>) -> Result<bool, String> {
    match state {
        None | Some("present") => Ok(false),
        Some("absent") => Ok(true),
        Some(other) => Err(format!("state `{other}` is neither `present` nor `absent`")),
    }
}

/// A schema: `monitor` or `{ name: app, owner: dbuser_app, state: absent }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schema {
    pub name: String,
    pub owner: Option<String>,
    pub absent: bool,
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            name: String,
            owner: Option<String>,
            state: Option<String>,
        }
        let what = "a schema name or { name, owner, state }";
        Ok(match name_or::<D, Full>(d, what)? {
            Ok(name) => Schema {
                name,
                owner: None,
                absent: false,
            },
            Err(f) => Schema {
                name: f.name,
                owner: f.owner.filter(|o| !o.is_empty()),
                absent: absent(f.state.as_deref()).map_err(serde::de::Error::custom)?,
            },
        })
    }
}

/// One `pg_default_privileges` entry, the tail of `ALTER DEFAULT PRIVILEGES FOR ROLE
/// r ...`: `GRANT SELECT ON TABLES TO dbrole_readonly`. Pigsty pastes the text into
/// SQL; here it is parsed, so only a privilege statement can reach the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefaultPrivilege {
    /// `GRANT` or `REVOKE`.
    pub verb: String,
    /// Upper-case privilege keywords: `SELECT`, `INSERT, UPDATE`, `ALL PRIVILEGES`.
    pub privileges: String,
    /// `TABLES`, `SEQUENCES`, `FUNCTIONS`, `ROUTINES`, `TYPES`, `SCHEMAS` or
    /// `LARGE OBJECTS`.
    pub objects: String,
    /// The grantee role (or `PUBLIC`).
    pub role: String,
    pub grant_option: bool,
    /// The text as written, for messages.
    pub text: String,
}

impl DefaultPrivilege {
    pub fn parse(text: &str) -> Result<Self, String> {
        const PRIVS: &[&str] = &[
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "TRUNCATE",
            "REFERENCES",
            "TRIGGER",
            "EXECUTE",
            "USAGE",
            "CREATE",
            "MAINTAIN",
            "ALL",
        ];
        const OBJECTS: &[&str] = &[
            "TABLES",
            "SEQUENCES",
            "FUNCTIONS",
            "ROUTINES",
            "TYPES",
            "SCHEMAS",
        ];
        let bad = |why: &str| {
            Err(format!(
                "`{text}` is not a default privilege ({why}); expected e.g. `GRANT SELECT ON TABLES TO dbrole_readonly`"
            ))
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let verb = match upper.first().map(String::as_str) {
            Some(v @ ("GRANT" | "REVOKE")) => v.to_string(),
            _ => return bad("it starts with neither GRANT nor REVOKE"),
        };
        let Some(on) = upper.iter().position(|w| w == "ON") else {
            return bad("no ON");
        };
        let privileges = upper[1..on].join(" ");
        let privs_ok = !privileges.is_empty()
            && privileges.split(',').all(|p| {
                let p = p.trim();
                PRIVS.contains(&p) || p == "ALL PRIVILEGES"
            });
        if !privs_ok {
            return bad("unknown privilege");
        }
        let mut at = on + 1;
        let objects = if upper.get(at).map(String::as_str) == Some("LARGE")
            && upper.get(at + 1).map(String::as_str) == Some("OBJECTS")
        {
            at += 2;
            "LARGE OBJECTS".to_string()
        } else {
            let o = upper.get(at).cloned().unwrap_or_default();
            if !OBJECTS.contains(&o.as_str()) {
                return bad("unknown object kind");
            }
            at += 1;
            o
        };
        let to = if verb == "GRANT" { "TO" } else { "FROM" };
        if upper.get(at).map(String::as_str) != Some(to) {
            return bad(&format!("{verb} needs {to} and a role"));
        }
        let Some(role) = words.get(at + 1) else {
            return bad("no role");
        };
        let role = match role.trim_matches('"') {
            r if r.eq_ignore_ascii_case("public") => "PUBLIC".to_string(),
            r => r.to_string(),
        };
        let rest: Vec<&str> = upper[at + 2..].iter().map(String::as_str).collect();
        let grant_option = match rest.as_slice() {
            [] => false,
            ["WITH", "GRANT", "OPTION"] if verb == "GRANT" => true,
            _ => return bad("unexpected words after the role"),
        };
        if role.is_empty() || role.chars().any(|c| c.is_control() || c == '"') {
            return bad("bad role name");
        }
        Ok(Self {
            verb,
            privileges,
            objects,
            role,
            grant_option,
            text: text.to_string(),
        })
    }
}

impl<'de> Deserialize<'de> for DefaultPrivilege {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
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

/// A service of the node's haproxy (`haproxy_services`), as Pigsty's `service.j2`
/// renders it: a `listen` section with its servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyService {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub ip: Option<String>,
    /// `tcp` (default) or `http`.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub maxconn: Option<u32>,
    #[serde(default)]
    pub balance: Option<String>,
    /// haproxy lines, written into the section as they are.
    #[serde(default)]
    pub options: Vec<String>,
    /// The `default-server` options.
    #[serde(default)]
    pub default: Option<String>,
    pub servers: Vec<HaproxyServer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyServer {
    pub name: String,
    pub ip: String,
    pub port: u16,
    #[serde(default)]
    pub options: Option<String>,
    #[serde(default)]
    pub backup: Option<Flag>,
    #[serde(default)]
    pub weight: Option<u32>,
}

impl HaproxyService {
    /// Whether it names the fleet CA's files (`check-ssl ca-file /etc/pki/ca.crt`,
    /// Pigsty's MinIO service): haproxy refuses such a config on a node without them.
    pub fn needs_fleet_ca(&self) -> bool {
        self.options
            .iter()
            .map(String::as_str)
            .chain(self.default.as_deref())
            .chain(self.servers.iter().filter_map(|v| v.options.as_deref()))
            .any(|o| o.contains("/etc/pki/"))
    }
}

/// A haproxy service from `pg_default_services` / `pg_services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgService {
    pub name: String,
    pub port: u16,
    #[serde(default)]
    pub ip: Option<String>,
    /// `default`, `postgres`, `pgbouncer` or a port; Pigsty also takes the port as an
    /// integer (`dest: 1433`), kept here as its text.
    #[serde(default, deserialize_with = "dest_text")]
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

fn dest_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) if n.is_u64() => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected default, postgres, pgbouncer or a port number, found {}",
            json_type(&other)
        ))),
    }
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
    fn default_privileges_parse_only_privilege_statements() {
        let p =
            DefaultPrivilege::parse("GRANT SELECT     ON TABLES     TO  dbrole_readonly").unwrap();
        assert_eq!(
            (
                p.verb.as_str(),
                p.privileges.as_str(),
                p.objects.as_str(),
                p.role.as_str()
            ),
            ("GRANT", "SELECT", "TABLES", "dbrole_readonly")
        );
        let p =
            DefaultPrivilege::parse("grant insert, update on tables to \"app\" with grant option")
                .unwrap();
        assert_eq!(
            (p.privileges.as_str(), p.role.as_str(), p.grant_option),
            ("INSERT, UPDATE", "app", true)
        );
        let p =
            DefaultPrivilege::parse("REVOKE ALL PRIVILEGES ON LARGE OBJECTS FROM public").unwrap();
        assert_eq!(
            (p.objects.as_str(), p.role.as_str()),
            ("LARGE OBJECTS", "PUBLIC")
        );
        for bad in [
            "SELECT ON TABLES TO x",
            "GRANT SELECT ON TABLES FROM x",
            "GRANT DROP ON TABLES TO x",
            "GRANT SELECT ON VIEWS TO x",
            "GRANT SELECT ON TABLES TO x; DROP TABLE y",
            "GRANT SELECT ON TABLES TO",
            "REVOKE SELECT ON TABLES FROM x WITH GRANT OPTION",
        ] {
            assert!(DefaultPrivilege::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crontab_lines_parse_as_cron_reads_them() {
        let j = CronJob::parse("00 01 * * * /pg/bin/pg-backup full", false).unwrap();
        assert_eq!(
            (j.schedule.as_str(), j.command.as_str()),
            ("00 01 * * *", "/pg/bin/pg-backup full")
        );
        assert_eq!(
            j.line_as("postgres"),
            "00 01 * * * postgres /pg/bin/pg-backup full"
        );
        let j = CronJob::parse("00 01 * * 2,3,4,5,6,7 postgres /pg/bin/pg-backup", true).unwrap();
        assert_eq!(
            (j.user.as_deref(), j.command.as_str()),
            (Some("postgres"), "/pg/bin/pg-backup")
        );
        let j = CronJob::parse("*/5 9-17 * jan-mar mon-fri root echo a  b", true).unwrap();
        assert_eq!(j.command, "echo a  b");
        assert!(CronJob::parse("@daily /pg/bin/pg-backup", false).is_ok());
        for (bad, with_user) in [
            ("00 01 * * /pg/bin/pg-backup", false),
            ("61 01 * * * x", false),
            ("00 24 * * * x", false),
            ("*/0 * * * * x", false),
            ("@often x", false),
            ("00 01 * * * postgres", true),
            ("00 01 * * *", false),
            ("00 01 * * * x\n* * * * * root rm -rf /", false),
        ] {
            assert!(CronJob::parse(bad, with_user).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extensions_and_schemas_take_pigstys_keys() {
        let e: Extension =
            serde_json::from_str(r#"{"name": "postgis", "schema": "gis", "version": 3.5}"#)
                .unwrap();
        assert_eq!(
            (e.schema.as_deref(), e.version.as_deref(), e.absent),
            (Some("gis"), Some("3.5"), false)
        );
        let e: Extension = serde_json::from_str(r#"{"name": "x", "state": "absent"}"#).unwrap();
        assert!(e.absent);
        assert!(serde_json::from_str::<Extension>(r#"{"name": "x", "state": "gone"}"#).is_err());
        let s: Schema = serde_json::from_str(r#"{"name": "app", "owner": "dbuser_app"}"#).unwrap();
        assert_eq!(
            (s.name.as_str(), s.owner.as_deref(), s.absent),
            ("app", Some("dbuser_app"), false)
        );
        let s: Schema = serde_json::from_str(r#""monitor""#).unwrap();
        assert_eq!(s.name, "monitor");
    }

    #[test]
    fn rto_plans_read_pigstys_arrays() {
        let norm: RtoPlan =
            serde_json::from_str(r#"[30, 5, 10, 25, 5, "2s", "1s", "2s", 3, 3]"#).unwrap();
        assert_eq!(norm, NORM);
        let fast: RtoPlan =
            serde_json::from_str(r#"[20, 5, 5, 15, 5, "1s", "0.5s", "1s", 3, 3]"#).unwrap();
        assert_eq!(fast.checks.fastinter_ms, 500);
        for bad in [
            r#"[30, 5, 10, 25, 5, "2s", "1s", "2s", 3]"#,
            r#"[30, 5, 10, 25, 5, "2x", "1s", "2s", 3, 3]"#,
            r#"[30, 5, 10, 25, 5, "0.1ms", "1s", "2s", 3, 3]"#,
            r#"[30, 0, 10, 25, 5, "2s", "1s", "2s", 3, 3]"#,
            r#"[20, 5, 10, 25, 5, "2s", "1s", "2s", 3, 3]"#,
        ] {
            assert!(serde_json::from_str::<RtoPlan>(bad).is_err(), "{bad}");
        }
        assert_eq!(haproxy_time_ms(&serde_json::json!("1m")), Some(60_000));
        assert_eq!(haproxy_time_ms(&serde_json::json!(250)), Some(250));
        assert_eq!(haproxy_time_ms(&serde_json::json!("")), None);
    }

    #[test]
    fn rto_names_and_seconds() {
        let norm: PgRto = serde_json::from_str("\"norm\"").unwrap();
        assert_eq!(norm, PgRto::Plan("norm".into()));
        let lab: PgRto = serde_json::from_str("\"lab\"").unwrap();
        assert_eq!(lab, PgRto::Plan("lab".into()));
        let v3: PgRto = serde_json::from_str("30").unwrap();
        assert_eq!(v3, PgRto::Seconds(30));
        assert!(serde_json::from_str::<PgRto>("\"\"").is_err());
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
