//! PostgreSQL parameters of the `pg_conf` templates (oltp, olap, crit, tiny), after
//! Pigsty's `roles/pgsql/templates/*.yml`, plus `pg_libs` and `pg_parameters`.
//!
//! Pigsty sizes memory, parallelism and WAL from the node's CPU, memory and disk at
//! install time. An image is built before the node exists, so those values are
//! computed here for [`Hardware::REFERENCE`] and marked in patroni.yml; `pigsty agent
//! tune` computes them again for the machine at each boot (`plan::sizing`).
//!
//! Parameters are split the way Patroni reads them: the ones Patroni passes on the
//! postgres command line must be equal on every member and are only honoured from the
//! cluster-wide (DCS) configuration, so they go to `bootstrap.dcs`; the others go to
//! the node's own `postgresql.parameters`, which follow the image on every reimage.

use std::collections::BTreeMap;

use crate::model::{PgConf, PgMaxConn, PgParams};
use crate::plan::sizing::{Hardware, PgSizing};

/// Patroni 3.0's `ConfigHandler.CMDLINE_OPTIONS`: only read from the DCS.
pub const CLUSTER_WIDE: &[&str] = &[
    "listen_addresses",
    "port",
    "cluster_name",
    "wal_level",
    "hot_standby",
    "max_connections",
    "max_wal_senders",
    "wal_keep_segments",
    "wal_keep_size",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "track_commit_timestamp",
    "max_replication_slots",
    "max_worker_processes",
    "wal_log_hints",
];

/// Parameters Patroni owns itself (from `postgresql.listen`/`connect_address` and the
/// scope), which an inventory may not set.
const PATRONI_OWNED: &[&str] = &["listen_addresses", "port", "cluster_name", "hot_standby"];

/// Where the SSL key pair comes from: Debian's `ssl-cert` snakeoil pair, readable by
/// the `ssl-cert` group that `postgres` belongs to. Pigsty signs one per node with its
/// CA instead; this pair exists on every Debian node without a CA.
pub const SSL_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
pub const SSL_KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";
/// With the fleet CA: the node's pair and the CA, where Pigsty puts them.
pub const CA_CERT: &str = "/pg/cert/ca.crt";
pub const SERVER_CERT: &str = "/pg/cert/server.crt";
pub const SERVER_KEY: &str = "/pg/cert/server.key";

/// The certificate and key PostgreSQL (and pgbouncer) serve: the node's from the
/// fleet CA when it has one, else the snakeoil pair.
pub fn server_pair(tls: bool) -> (&'static str, &'static str) {
    if tls {
        (SERVER_CERT, SERVER_KEY)
    } else {
        (SSL_CERT, SSL_KEY)
    }
}
pub const LOG_DIR: &str = "/pg/log/postgres";
pub const SOCKET_DIR: &str = "/var/run/postgresql";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    /// `bootstrap.dcs.postgresql.parameters`.
    pub cluster: BTreeMap<String, String>,
    /// `postgresql.parameters` (this node's config file).
    pub local: BTreeMap<String, String>,
    /// The parameters sized from the machine (in either map above).
    pub sized: Vec<String>,
}

/// What the sized parameters of an instance depend on, besides the machine.
pub fn sizing(p: &PgParams) -> PgSizing {
    let libs = libraries(&p.pg_libs);
    PgSizing {
        conf: p.pg_conf,
        max_connections: max_connections(p),
        shared_buffer_ratio: p.pg_shared_buffer_ratio.0,
        version: p.pg_version,
        timescaledb: libs.iter().any(|l| l == "timescaledb"),
        fixed: p.pg_parameters.keys().cloned().collect(),
    }
}

/// The parameters of one instance: template, libraries, then `pg_parameters`. With
/// `tls` (the node has a certificate from the fleet CA) it serves that pair and
/// trusts the CA for client certificates (`ssl_ca_file`), as Pigsty does.
pub fn parameters(p: &PgParams, cluster: &str, tls: bool) -> Result<Parameters, String> {
    let libs = libraries(&p.pg_libs);
    let mut all = BTreeMap::new();
    for (k, v) in template(p, &libs, cluster) {
        all.insert(k.to_string(), v);
    }
    if tls {
        let (cert, key) = server_pair(true);
        all.insert("ssl_cert_file".into(), cert.into());
        all.insert("ssl_key_file".into(), key.into());
        all.insert("ssl_ca_file".into(), CA_CERT.into());
    }
    for (k, v) in &p.pg_parameters {
        check_parameter(k, &v.0)?;
        if PATRONI_OWNED.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "pg_parameters.{k}: Patroni sets `{k}` itself (from pg_listen, pg_port and pg_cluster)"
            ));
        }
        all.insert(k.clone(), v.0.clone());
    }
    let mut out = Parameters::default();
    for (k, v) in sizing(p).parameters(&Hardware::REFERENCE) {
        all.insert(k.to_string(), v);
        out.sized.push(k.to_string());
    }
    for (k, v) in all {
        let wide = CLUSTER_WIDE.contains(&k.to_ascii_lowercase().as_str());
        if wide {
            &mut out.cluster
        } else {
            &mut out.local
        }
        .insert(k, v);
    }
    out.local
        .insert("unix_socket_directories".into(), SOCKET_DIR.into());
    Ok(out)
}

/// `pg_libs` as a list (`'pg_stat_statements, auto_explain'`).
pub fn libraries(libs: &str) -> Vec<String> {
    libs.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A name and value that postgresql.conf (written by Patroni as `name = 'value'`) reads
/// back unchanged: a GUC name, and a value without control characters.
fn check_parameter(name: &str, value: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$')) {
        return Err(format!(
            "pg_parameters: {name:?} is not a PostgreSQL parameter name"
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "pg_parameters.{name}: the value {value:?} holds the control character {c:?}, which postgresql.conf cannot carry"
        ));
    }
    Ok(())
}

/// One template's parameters for this instance, before `pg_parameters`.
fn template(p: &PgParams, libs: &[String], cluster: &str) -> Vec<(&'static str, String)> {
    let mut t = Template {
        p,
        libs,
        out: Vec::new(),
    };
    t.important();
    t.resources();
    t.wal(cluster);
    t.replication();
    t.logging();
    t.autovacuum_and_clients();
    t.libraries();
    t.out
}

/// The parameters of one instance as they are collected, section by section (the
/// sections of Pigsty's templates).
struct Template<'a> {
    p: &'a PgParams,
    libs: &'a [String],
    out: Vec<(&'static str, String)>,
}

impl Template<'_> {
    fn set(&mut self, k: &'static str, v: impl Into<String>) {
        self.out.push((k, v.into()));
    }

    /// The value for this instance's template: oltp, olap, crit, tiny.
    fn pick(&self, oltp: &str, olap: &str, crit: &str, tiny: &str) -> String {
        match self.p.pg_conf {
            PgConf::Oltp => oltp,
            PgConf::Olap => olap,
            PgConf::Crit => crit,
            PgConf::Tiny => tiny,
        }
        .to_string()
    }

    fn has(&self, lib: &str) -> bool {
        self.libs.iter().any(|l| l == lib)
    }

    fn is(&self, conf: PgConf) -> bool {
        self.p.pg_conf == conf
    }

    fn important(&mut self) {
        let conns = max_connections(self.p);
        let heavy_locks = self.has("citus") || self.has("timescaledb");
        let locks_factor = match (self.p.pg_conf, heavy_locks) {
            (PgConf::Olap, true) => 4,
            (PgConf::Olap, false) | (_, true) => 2,
            _ => 1,
        };
        let prepared = if self.has("citus") { conns } else { 0 };
        self.set("max_connections", conns.to_string());
        self.set("superuser_reserved_connections", "10");
        self.set(
            "max_locks_per_transaction",
            (conns * locks_factor).to_string(),
        );
        self.set("max_prepared_transactions", prepared.to_string());
        self.set("track_commit_timestamp", "on");
        self.set("wal_level", "logical");
        self.set("wal_log_hints", "on");
        if self.p.pg_version >= 15 {
            // Full-page images compressed with lz4 (Debian builds PostgreSQL with it).
            self.set("wal_compression", "lz4");
        }
        self.set("max_wal_senders", "50");
        self.set("max_replication_slots", "50");
        self.set("password_encryption", "scram-sha-256");
        self.set("ssl", "on");
        self.set("ssl_cert_file", SSL_CERT);
        self.set("ssl_key_file", SSL_KEY);
    }

    /// Memory and parallelism (sizing), cost-based vacuum, background writer.
    fn resources(&mut self) {
        if self.is(PgConf::Oltp) || self.is(PgConf::Crit) {
            // Twice PostgreSQL's parallel costs: OLTP queries rarely gain from workers.
            self.set("parallel_setup_cost", "2000");
            self.set("parallel_tuple_cost", "0.2");
            self.set("min_parallel_table_scan_size", "32MB");
            self.set("min_parallel_index_scan_size", "2MB");
        }
        if self.p.pg_version >= 13 {
            self.set("hash_mem_multiplier", "8.0");
        }
        self.set("huge_pages", "try");
        if self.p.pg_version >= 18 {
            // `auto` is Pigsty's choice for a Debian node: io_uring.
            let method = match self.p.pg_io_method {
                crate::model::IoMethod::Auto => crate::model::IoMethod::IoUring,
                m => m,
            };
            self.set("io_method", method.as_str());
        }
        self.set(
            "vacuum_cost_delay",
            self.pick("20ms", "10ms", "20ms", "20ms"),
        );
        self.set(
            "vacuum_cost_limit",
            self.pick("2000", "10000", "2000", "2000"),
        );
        self.set("bgwriter_delay", "10ms");
        self.set("bgwriter_lru_maxpages", "800");
        self.set("bgwriter_lru_multiplier", "5.0");
    }

    /// WAL sizes (sizing: disk), flushing, checkpoints, archiving to pgBackRest.
    fn wal(&mut self, cluster: &str) {
        if self.p.pg_version >= 18 {
            let timeout = self.pick("7d", "7d", "3d", "7d");
            self.set("idle_replication_slot_timeout", timeout);
        }
        self.set("wal_buffers", "16MB");
        self.set(
            "wal_writer_delay",
            self.pick("20ms", "20ms", "10ms", "20ms"),
        );
        self.set(
            "wal_writer_flush_after",
            self.pick("1MB", "1MB", "0", "1MB"),
        );
        self.set("commit_delay", "20");
        self.set("commit_siblings", "10");
        self.set("checkpoint_timeout", "15min");
        self.set("checkpoint_completion_target", "0.95");
        if self.p.pgbackrest_enabled.0 {
            self.set("archive_mode", "on");
            self.set("archive_timeout", "300");
            let push = format!("pgbackrest --stanza={cluster} archive-push %p");
            self.set("archive_command", push);
        }
    }

    /// Replication, and query tuning for Pigsty's default storage (SSD).
    fn replication(&mut self) {
        let v = self.p.pg_version;
        if v >= 17 {
            self.set("sync_replication_slots", "on");
        }
        if self.is(PgConf::Crit) && v <= 15 {
            self.set("vacuum_defer_cleanup_age", "500000");
        }
        self.set("max_standby_archive_delay", "10min");
        self.set("max_standby_streaming_delay", "3min");
        self.set("wal_receiver_status_interval", "1s");
        self.set("hot_standby_feedback", "on");
        self.set("wal_receiver_timeout", "60s");
        self.set("max_logical_replication_workers", "8");
        self.set("max_sync_workers_per_subscription", "6");
        if self.is(PgConf::Olap) {
            self.set("enable_partitionwise_join", "on");
            self.set("enable_partitionwise_aggregate", "on");
        }
        self.set("random_page_cost", "1.1");
        self.set("effective_io_concurrency", "200");
        if v >= 13 {
            self.set("maintenance_io_concurrency", "100");
        }
        let target = self.pick("400", "1000", "400", "200");
        self.set("default_statistics_target", target);
    }

    /// csvlog files under /pg/log/postgres, and statistics collection.
    fn logging(&mut self) {
        self.set("log_destination", "csvlog");
        self.set("logging_collector", "on");
        self.set("log_directory", LOG_DIR);
        self.set("log_timezone", "UTC");
        self.set("log_filename", "postgresql-%a.log");
        self.set("log_file_mode", "0640");
        self.set("log_rotation_age", "1d");
        self.set("log_rotation_size", "0");
        self.set("log_truncate_on_rotation", "on");
        self.set("log_checkpoints", "on");
        self.set("log_lock_waits", "on");
        self.set("log_temp_files", "1024");
        self.set("log_replication_commands", "on");
        if self.p.pg_version >= 18 {
            if self.is(PgConf::Oltp) || self.is(PgConf::Crit) {
                self.set("log_lock_failures", "on");
            }
            if self.is(PgConf::Oltp) || self.is(PgConf::Olap) {
                self.set("log_connections", "authorization");
            }
            // CREATE DATABASE clones files on a copy-on-write filesystem.
            self.set("file_copy_method", "clone");
        }
        self.set("log_statement", "ddl");
        let slow = self.pick("100", "1000", "100", "100");
        self.set("log_min_duration_statement", slow);
        if self.is(PgConf::Crit) {
            let v18 = self.p.pg_version >= 18;
            let what = if v18 {
                "receipt,authentication,authorization"
            } else {
                "on"
            };
            self.set("log_connections", what);
            self.set("log_disconnections", "on");
        }
        self.set("track_io_timing", "on");
        if self.p.pg_version >= 18 && !self.is(PgConf::Oltp) && !self.is(PgConf::Tiny) {
            self.set("track_cost_delay_timing", "on");
        }
        self.set("track_functions", "all");
        let size = self.pick("8192", "8192", "32768", "8192");
        self.set("track_activity_query_size", size);
    }

    fn autovacuum_and_clients(&mut self) {
        self.set("log_autovacuum_min_duration", "1s");
        self.set("autovacuum_max_workers", self.pick("3", "3", "3", "2"));
        self.set("autovacuum_naptime", "1min");
        if !self.is(PgConf::Tiny) {
            self.set("autovacuum_vacuum_scale_factor", "0.08");
            self.set("autovacuum_analyze_scale_factor", "0.04");
        }
        self.set(
            "autovacuum_vacuum_threshold",
            self.pick("500", "1000", "500", "500"),
        );
        self.set(
            "autovacuum_analyze_threshold",
            self.pick("250", "500", "250", "250"),
        );
        self.set("autovacuum_vacuum_cost_delay", "-1");
        self.set("autovacuum_vacuum_cost_limit", "-1");
        self.set("autovacuum_freeze_max_age", "1000000000");
        self.set("deadlock_timeout", "50ms");
        let idle = self.pick("10min", "0", "1min", "10min");
        self.set("idle_in_transaction_session_timeout", idle);
    }

    /// `pg_libs`, and each library's settings only when it is loaded: an unloaded
    /// library's settings would be placeholders PostgreSQL cannot check.
    fn libraries(&mut self) {
        self.set("shared_preload_libraries", self.libs.join(", "));
        if self.has("auto_explain") {
            self.set("auto_explain.log_min_duration", "1s");
            self.set("auto_explain.log_analyze", "on");
            self.set("auto_explain.log_verbose", "on");
            self.set("auto_explain.log_timing", "on");
            self.set("auto_explain.log_nested_statements", "on");
        }
        if self.has("pg_stat_statements") {
            let max = self.pick("10000", "10000", "10000", "2500");
            self.set("pg_stat_statements.max", max);
            self.set("pg_stat_statements.track", "all");
            self.set("pg_stat_statements.track_utility", "off");
            self.set("pg_stat_statements.track_planning", "off");
        }
        if self.has("pg_wait_sampling") {
            self.set("pg_wait_sampling.profile_pid", "false");
            self.set("pg_wait_sampling.profile_queries", "all");
            self.set("pg_wait_sampling.history_size", "100000");
        }
        if self.has("timescaledb") {
            self.set("timescaledb.telemetry_level", "off");
        }
        if self.has("pg_cron") {
            self.set("cron.database_name", "postgres");
        }
    }
}

/// `pg_max_conn`, or for `auto` Pigsty's per-template choice.
fn max_connections(p: &PgParams) -> u32 {
    if let PgMaxConn::Fixed(n) = p.pg_max_conn {
        return n;
    }
    let via_pgbouncer = p.pg_default_service_dest == "pgbouncer";
    match p.pg_conf {
        PgConf::Olap => 500,
        PgConf::Tiny => 250,
        PgConf::Oltp | PgConf::Crit if via_pgbouncer => 500,
        PgConf::Oltp | PgConf::Crit => 1000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        assert!(check_parameter("work_mem", "64MB").is_ok());
        assert!(check_parameter("auto_explain.log_analyze", "on").is_ok());
        assert!(check_parameter("a b", "x").is_err());
        assert!(check_parameter("x", "a\nb").is_err());
        assert!(check_parameter("9x", "1").is_err());
    }

    #[test]
    fn libraries_split() {
        assert_eq!(libraries(" citus, pg_cron ,,x"), ["citus", "pg_cron", "x"]);
    }
}
