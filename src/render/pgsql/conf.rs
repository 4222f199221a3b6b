//! PostgreSQL parameters of the `pg_conf` templates (oltp, olap, crit, tiny), after
//! Pigsty's `roles/pgsql/templates/*.yml`, plus `pg_libs` and `pg_parameters`.
//!
//! Pigsty sizes memory, parallelism and WAL from the node's CPU, memory and disk at
//! install time. An image is built before the node exists, so those values are fixed
//! here at what Pigsty's formulas give on a small node (2-4 CPUs, a disk under 20 GiB),
//! each marked "sizing" below; the first-boot agent can raise them for the machine.
//!
//! Parameters are split the way Patroni reads them: the ones Patroni passes on the
//! postgres command line must be equal on every member and are only honoured from the
//! cluster-wide (DCS) configuration, so they go to `bootstrap.dcs`; the others go to
//! the node's own `postgresql.parameters`, which follow the image on every reimage.

use std::collections::BTreeMap;

use crate::model::{PgConf, PgParams};

/// Patroni 3.0's `ConfigHandler.CMDLINE_OPTIONS`: only read from the DCS.
const CLUSTER_WIDE: &[&str] = &[
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
pub const LOG_DIR: &str = "/pg/log/postgres";
pub const SOCKET_DIR: &str = "/var/run/postgresql";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    /// `bootstrap.dcs.postgresql.parameters`.
    pub cluster: BTreeMap<String, String>,
    /// `postgresql.parameters` (this node's config file).
    pub local: BTreeMap<String, String>,
}

/// The parameters of one instance: template, libraries, then `pg_parameters`.
pub fn parameters(p: &PgParams, cluster: &str) -> Result<Parameters, String> {
    let libs = libraries(&p.pg_libs);
    let mut all = BTreeMap::new();
    for (k, v) in template(p, &libs, cluster) {
        all.insert(k.to_string(), v);
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
    let c = p.pg_conf;
    let v = p.pg_version;
    let has = |lib: &str| libs.iter().any(|l| l == lib);
    let pick = |oltp: &str, olap: &str, crit: &str, tiny: &str| {
        match c {
            PgConf::Oltp => oltp,
            PgConf::Olap => olap,
            PgConf::Crit => crit,
            PgConf::Tiny => tiny,
        }
        .to_string()
    };
    let conns = max_connections(p);
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut set = |k: &'static str, v: String| out.push((k, v));

    // important parameters
    set("max_connections", conns.to_string());
    set("superuser_reserved_connections", "10".into());
    let locks_factor = match (c, has("citus") || has("timescaledb")) {
        (PgConf::Olap, true) => 4,
        (PgConf::Olap, false) | (_, true) => 2,
        _ => 1,
    };
    set(
        "max_locks_per_transaction",
        (conns * locks_factor).to_string(),
    );
    set(
        "max_prepared_transactions",
        if has("citus") { conns } else { 0 }.to_string(),
    );
    set("track_commit_timestamp", "on".into());
    set("wal_level", "logical".into());
    set("wal_log_hints", "on".into());
    set("max_worker_processes", pick("24", "28", "24", "20")); // sizing
    set("max_wal_senders", "50".into());
    set("max_replication_slots", "50".into());

    // authentication
    set("password_encryption", "scram-sha-256".into());
    set("ssl", "on".into());
    set("ssl_cert_file", SSL_CERT.into());
    set("ssl_key_file", SSL_KEY.into());

    // resources (sizing: memory, parallelism)
    set("shared_buffers", pick("256MB", "256MB", "256MB", "128MB"));
    set(
        "maintenance_work_mem",
        pick("64MB", "128MB", "64MB", "32MB"),
    );
    set("work_mem", pick("64MB", "64MB", "64MB", "16MB"));
    set("effective_cache_size", pick("1GB", "1GB", "1GB", "512MB"));
    set("max_parallel_workers", pick("2", "2", "2", "1"));
    set("max_parallel_maintenance_workers", pick("2", "2", "2", "1"));
    set("max_parallel_workers_per_gather", pick("2", "2", "2", "0"));
    if matches!(c, PgConf::Oltp | PgConf::Crit) {
        set("parallel_setup_cost", "2000".into());
        set("parallel_tuple_cost", "0.2".into());
        set("min_parallel_table_scan_size", "16MB".into());
        set("min_parallel_index_scan_size", "1024".into());
    }
    if v >= 13 {
        set("hash_mem_multiplier", "8.0".into());
    }
    set("huge_pages", "try".into());
    set("temp_file_limit", pick("1GB", "4GB", "1GB", "1GB")); // sizing: disk
    set("vacuum_cost_delay", pick("20ms", "10ms", "20ms", "20ms"));
    set("vacuum_cost_limit", pick("2000", "10000", "2000", "2000"));
    set("bgwriter_delay", "10ms".into());
    set("bgwriter_lru_maxpages", "800".into());
    set("bgwriter_lru_multiplier", "5.0".into());

    // WAL (sizing: disk)
    set("min_wal_size", "1GB".into());
    set("max_wal_size", "4GB".into());
    set("max_slot_wal_keep_size", "6GB".into());
    if v >= 18 {
        set(
            "idle_replication_slot_timeout",
            pick("7d", "7d", "3d", "7d"),
        );
    }
    set("wal_buffers", "16MB".into());
    set("wal_writer_delay", pick("20ms", "20ms", "10ms", "20ms"));
    set("wal_writer_flush_after", pick("1MB", "1MB", "0", "1MB"));
    set("commit_delay", "20".into());
    set("commit_siblings", "10".into());
    set("checkpoint_timeout", "15min".into());
    set("checkpoint_completion_target", "0.80".into());
    if p.pgbackrest_enabled.0 {
        set("archive_mode", "on".into());
        set("archive_timeout", "300".into());
        set(
            "archive_command",
            format!("pgbackrest --stanza={cluster} archive-push %p"),
        );
    }

    // replication
    if v >= 17 {
        set("sync_replication_slots", "on".into());
    }
    if c == PgConf::Crit && v <= 15 {
        set("vacuum_defer_cleanup_age", "500000".into());
    }
    set("max_standby_archive_delay", "10min".into());
    set("max_standby_streaming_delay", "3min".into());
    set("wal_receiver_status_interval", "1s".into());
    set("hot_standby_feedback", "on".into());
    set("wal_receiver_timeout", "60s".into());
    set("max_logical_replication_workers", "8".into());
    set("max_sync_workers_per_subscription", "6".into());

    // query tuning (Pigsty's default storage type: SSD)
    if c == PgConf::Olap {
        set("enable_partitionwise_join", "on".into());
        set("enable_partitionwise_aggregate", "on".into());
    }
    set("random_page_cost", "1.1".into());
    set("effective_io_concurrency", "200".into());
    if v >= 13 {
        set("maintenance_io_concurrency", "100".into());
    }
    set(
        "default_statistics_target",
        pick("400", "1000", "400", "200"),
    );

    // logging
    set("log_destination", "csvlog".into());
    set("logging_collector", "on".into());
    set("log_directory", LOG_DIR.into());
    set("log_timezone", "UTC".into());
    set("log_filename", "postgresql-%a.log".into());
    set("log_file_mode", "0640".into());
    set("log_rotation_age", "1d".into());
    set("log_rotation_size", "0".into());
    set("log_truncate_on_rotation", "on".into());
    set("log_checkpoints", "on".into());
    set("log_lock_waits", "on".into());
    set("log_temp_files", "1024".into());
    set("log_replication_commands", "on".into());
    set("log_statement", "ddl".into());
    set(
        "log_min_duration_statement",
        pick("100", "1000", "100", "100"),
    );
    if c == PgConf::Crit {
        let conns_log = if v >= 18 {
            "receipt,authentication,authorization"
        } else {
            "on"
        };
        set("log_connections", conns_log.into());
        set("log_disconnections", "on".into());
    }

    // statistics
    set("track_io_timing", "on".into());
    if v >= 18 && matches!(c, PgConf::Olap | PgConf::Crit) {
        set("track_cost_delay_timing", "on".into());
    }
    set("track_functions", "all".into());
    set(
        "track_activity_query_size",
        pick("8192", "8192", "32768", "8192"),
    );

    // autovacuum
    set("log_autovacuum_min_duration", "1s".into());
    set("autovacuum_max_workers", pick("3", "3", "3", "2"));
    set("autovacuum_naptime", "1min".into());
    if c != PgConf::Tiny {
        set("autovacuum_vacuum_scale_factor", "0.08".into());
        set("autovacuum_analyze_scale_factor", "0.04".into());
    }
    set("autovacuum_vacuum_cost_delay", "-1".into());
    set("autovacuum_vacuum_cost_limit", "-1".into());
    set("autovacuum_freeze_max_age", "1000000000".into());

    // client
    set("deadlock_timeout", "50ms".into());
    set(
        "idle_in_transaction_session_timeout",
        pick("10min", "0", "1min", "10min"),
    );

    // libraries, and their settings only when loaded (an unloaded library's settings
    // would be placeholders PostgreSQL cannot check)
    set("shared_preload_libraries", libs.join(", "));
    if has("auto_explain") {
        set("auto_explain.log_min_duration", "1s".into());
        set("auto_explain.log_analyze", "on".into());
        set("auto_explain.log_verbose", "on".into());
        set("auto_explain.log_timing", "on".into());
        set("auto_explain.log_nested_statements", "on".into());
    }
    if has("pg_stat_statements") {
        set(
            "pg_stat_statements.max",
            pick("10000", "10000", "10000", "2500"),
        );
        set("pg_stat_statements.track", "all".into());
        set("pg_stat_statements.track_utility", "off".into());
        set("pg_stat_statements.track_planning", "off".into());
    }
    if has("pg_wait_sampling") {
        set("pg_wait_sampling.profile_pid", "false".into());
        set("pg_wait_sampling.profile_queries", "all".into());
        set("pg_wait_sampling.history_size", "100000".into());
    }
    if has("timescaledb") {
        set("timescaledb.telemetry_level", "off".into());
    }
    if has("pg_cron") {
        set("cron.database_name", "postgres".into());
    }
    out
}

/// `pg_max_conn: auto` (the only value we model): Pigsty's per-template choice.
fn max_connections(p: &PgParams) -> u32 {
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
