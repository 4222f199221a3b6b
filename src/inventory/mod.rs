//! Load a Pigsty inventory: find it, parse it, resolve every host's variables and
//! validate the result into a typed [`Fleet`].

mod baseline;
pub mod groups;
mod packages;
mod reader;
mod repos;
mod rules;
mod unimplemented;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use crate::diag::{Finding, Invalid, Loc};
use crate::model::Fleet;

/// The built-in default inventory: a singleton meta node.
pub const BUILTIN: &str = include_str!("../../inventory/pigsty.yml");
/// How the built-in inventory is named in messages.
pub const BUILTIN_NAME: &str = "<built-in>/pigsty.yml";
/// The built-in lab inventory (`pigsty lab` without `-i`): three nodes, each running
/// etcd, MinIO and PostgreSQL.
pub const BUILTIN_LAB: &str = include_str!("../../inventory/lab.yml");
pub const BUILTIN_LAB_NAME: &str = "<built-in>/lab.yml";

/// Where an inventory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    BuiltIn,
    BuiltInLab,
}

impl Source {
    /// Inventory lookup order: `-i PATH`, `$PIGSTY_INVENTORY`, `./pigsty.yml`, built-in.
    pub fn locate(flag: Option<&Path>, env: Option<&str>, cwd: &Path) -> Source {
        if let Some(p) = flag {
            return Source::File(p.to_path_buf());
        }
        if let Some(p) = env.filter(|p| !p.is_empty()) {
            return Source::File(PathBuf::from(p));
        }
        let local = cwd.join("pigsty.yml");
        if local.is_file() {
            return Source::File(PathBuf::from("pigsty.yml"));
        }
        Source::BuiltIn
    }

    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::BuiltIn => BUILTIN_NAME.to_string(),
            Source::BuiltInLab => BUILTIN_LAB_NAME.to_string(),
        }
    }
}

/// A validated inventory and its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub fleet: Fleet,
    pub warnings: Vec<Finding>,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading inventory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not an inventory to read: not a regular file, or larger than
    /// [`MAX_INVENTORY_BYTES`].
    #[error("inventory {path}: {reason}")]
    Refused { path: String, reason: String },
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// The most an inventory file may hold (Pigsty's largest conf is about 40 KiB):
/// a device or a runaway file is refused before it is read.
pub const MAX_INVENTORY_BYTES: u64 = 4 << 20;

/// An inventory file's text: a regular file (a FIFO or a device would block or never
/// end) of at most [`MAX_INVENTORY_BYTES`], read no further than that.
fn read_inventory(path: &Path, name: &str) -> Result<String, LoadError> {
    use std::io::Read;
    let refused = |reason: String| LoadError::Refused {
        path: name.to_string(),
        reason,
    };
    let io = |e: std::io::Error| LoadError::Io {
        path: name.to_string(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(refused("is not a regular file".into()));
    }
    let too_big = || {
        refused(format!(
            "is larger than {} MiB, more than any inventory",
            MAX_INVENTORY_BYTES >> 20
        ))
    };
    if meta.len() > MAX_INVENTORY_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_INVENTORY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_INVENTORY_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| {
        refused(format!(
            "is not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Read and validate an inventory from its source.
pub fn load(source: &Source) -> Result<Loaded, LoadError> {
    let name = source.name();
    let text = match source {
        Source::BuiltIn => BUILTIN.to_string(),
        Source::BuiltInLab => BUILTIN_LAB.to_string(),
        Source::File(path) => read_inventory(path, &name)?,
    };
    let dir = match source {
        Source::File(path) => Some(match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }),
        _ => None,
    };
    Ok(load_str_in(&name, &text, dir.as_deref())?)
}

/// Validate inventory text; `name` is how the file is named in findings. Files it
/// names (`pg_databases[].baseline`) cannot be read: there is no directory.
pub fn load_str(name: &str, text: &str) -> Result<Loaded, Invalid> {
    load_str_in(name, text, None)
}

/// Validate inventory text read from a file in `dir`, where the files it names
/// (`pg_databases[].baseline`) are looked up, as Pigsty looks in `files/`.
pub fn load_str_in(name: &str, text: &str, dir: Option<&Path>) -> Result<Loaded, Invalid> {
    let mut findings = Vec::new();
    let invalid = |findings: Vec<Finding>| Invalid {
        file: name.to_string(),
        findings,
        text: Some(text.to_string()),
    };
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            let f = Finding::error(
                name,
                Loc::new(1, 1),
                "all",
                "the inventory is empty: expected a mapping with the group `all`",
            );
            return Err(invalid(vec![f]));
        }
        Err(e) => {
            let f = Finding::error(
                name,
                e.loc,
                "yaml",
                format!("malformed YAML: {}", e.message),
            );
            return Err(invalid(vec![f]));
        }
    };
    let tree = groups::Tree::build(&root, name, &mut findings);
    let nodes = validate::validate(&tree, name, dir, &mut findings);
    if nodes.is_empty() && !findings.iter().any(Finding::is_error) {
        findings.push(Finding::error(
            name,
            root.loc,
            "all",
            "the inventory has no hosts",
        ));
    }
    if findings.iter().any(Finding::is_error) {
        return Err(invalid(findings));
    }
    Ok(Loaded {
        fleet: Fleet::new(name.to_string(), nodes),
        warnings: findings,
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let flag = Path::new("x.yml");
        assert_eq!(
            Source::locate(Some(flag), Some("e.yml"), dir.path()),
            Source::File(flag.into())
        );
        assert_eq!(
            Source::locate(None, Some("e.yml"), dir.path()),
            Source::File("e.yml".into())
        );
        assert_eq!(Source::locate(None, None, dir.path()), Source::BuiltIn);
        std::fs::write(dir.path().join("pigsty.yml"), "all: {}").unwrap();
        assert_eq!(
            Source::locate(None, Some(""), dir.path()),
            Source::File("pigsty.yml".into())
        );
    }

    #[test]
    fn builtin_loads() {
        let loaded = load(&Source::BuiltIn).unwrap();
        assert_eq!(loaded.fleet.nodes.len(), 1);
    }

    /// The fixture inventories' directory, where their baselines lie (`files/`).
    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventories")
    }

    #[test]
    fn minio_volume_expansion() {
        let text = include_str!("../../tests/fixtures/inventories/ha-trio.yml");
        let fleet = load_str_in("ha-trio.yml", text, Some(&fixtures()))
            .unwrap()
            .fleet;
        let cluster = &fleet.nodes[0].minio.as_ref().unwrap().cluster;
        assert_eq!(
            fleet.minio_volumes(cluster).unwrap(),
            "http://minio-{1...3}.pigsty:9000/data{1...2}"
        );
        let single = load(&Source::BuiltIn).unwrap().fleet;
        assert_eq!(single.minio_volumes("minio").unwrap(), "/data/minio");
    }

    #[test]
    fn precedence_host_over_group_over_all_over_default() {
        let text = "all:
  children:
    outer:
      vars: { pg_port: 6000, pgbouncer_port: 7000, node_timezone: Outer }
      children:
        pg-x:
          hosts:
            10.0.0.1: { pg_seq: 1, pg_role: primary, pg_port: 5999 }
            10.0.0.2: { pg_seq: 2, pg_role: replica }
          vars: { pg_cluster: pg-x, pgbouncer_port: 7001 }
  vars: { pg_port: 5000, node_timezone: All, admin_ip: 10.0.0.9, node_dns_servers: ['${admin_ip}', '${ip}'] }
";
        let fleet = load_str("p.yml", text).unwrap().fleet;
        let (a, b) = (&fleet.nodes[0], &fleet.nodes[1]);
        let (pa, pb) = (
            &a.pg.as_ref().unwrap().params,
            &b.pg.as_ref().unwrap().params,
        );
        assert_eq!(pa.pg_port, 5999, "host vars win");
        assert_eq!(pb.pg_port, 6000, "parent group over all.vars");
        assert_eq!(pb.pgbouncer_port, 7001, "child group over parent group");
        assert_eq!(b.node.node_timezone, "Outer");
        assert_eq!(pb.patroni_port, 8008, "built-in default");
        assert_eq!(
            b.node.node_dns_servers,
            ["10.0.0.9", "10.0.0.2"],
            "placeholders"
        );
        assert_eq!(a.nodename, "pg-x-1");
        assert_eq!(a.node_cluster, "pg-x");
    }

    #[test]
    fn v3_and_v4_rto() {
        let v3 = load_str_in(
            "v3.yml",
            include_str!("../../tests/fixtures/inventories/v3-full.yml"),
            Some(&fixtures()),
        )
        .unwrap();
        let v4 = load_str_in(
            "v4.yml",
            include_str!("../../tests/fixtures/inventories/v4-full.yml"),
            Some(&fixtures()),
        )
        .unwrap();
        let rto = |f: &Fleet| {
            f.nodes
                .iter()
                .find_map(|n| n.pg.as_ref())
                .unwrap()
                .params
                .pg_rto
                .clone()
        };
        assert!(matches!(rto(&v3.fleet), crate::model::PgRto::Seconds(_)));
        assert!(matches!(rto(&v4.fleet), crate::model::PgRto::Plan(_)));
    }

    #[test]
    fn base_picks_the_default_major_and_refuses_others_at_their_line() {
        let text = "all:\n  children:\n    pg-x:\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars: { pg_cluster: pg-x }\n  vars:\n    admin_ip: 10.0.0.1\n";
        let version = |t: &str| -> u32 {
            let fleet = load_str("b.yml", t).unwrap().fleet;
            fleet.nodes[0].pg.as_ref().unwrap().params.pg_version
        };
        // Unset: the newest major its repositories offer. Pigsty's default
        // node_repo_modules (local: infra, node, pgsql) brings PGDG, which has 18.
        assert_eq!(version(text), 18);
        let text = &format!("{text}    node_repo_modules: node\n");
        // The Debian archive alone: its own major, debian13 unless a scope says.
        assert_eq!(version(text), 17);
        assert_eq!(version(&format!("{text}    node_base: debian12\n")), 15);
        let host = text.replace(
            "pg_role: primary }",
            "pg_role: primary, node_base: debian12 }",
        );
        assert_eq!(version(&host), 15);

        // A major the base does not ship: exit 2 at the line that asks for it.
        let err = load_str("b.yml", &format!("{text}    pg_version: 18\n")).unwrap_err();
        let f = &err.findings[0];
        assert_eq!((f.key.as_str(), f.line), ("pg_version", 9), "{f:?}");
        assert!(f.message.contains("PostgreSQL 17"), "{}", f.message);
        let help = f.help.clone().unwrap_or_default();
        assert!(help.contains("`pgdg` (module pgsql)"), "{help}");

        // An unknown base, with the near name.
        let err = load_str("b.yml", &format!("{text}    node_base: debian-13\n")).unwrap_err();
        let f = &err.findings[0];
        assert_eq!((f.key.as_str(), f.line), ("node_base", 9), "{f:?}");
        assert!(f.message.contains("debian13, debian12"), "{}", f.message);
        assert_eq!(f.help.as_deref(), Some("did you mean `debian13`?"));
    }

    #[test]
    fn crontab_lines_fail_at_their_line() {
        let text = "all:\n  children:\n    pg-x:\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars:\n        pg_cluster: pg-x\n        pg_crontab: [ '00 01 * * * /pg/bin/pg-backup full', '00 25 * * * /pg/bin/pg-backup' ]\n        node_crontab:\n          - '00 01 * * * /pg/bin/pg-backup full'\n  vars:\n    admin_ip: 10.0.0.1\n    node_repo_modules: node\n";
        let err = load_str("x.yml", text).unwrap_err();
        let got: Vec<(&str, u32)> = err
            .findings
            .iter()
            .filter(|f| f.is_error())
            .map(|f| (f.key.as_str(), f.line))
            .collect();
        assert_eq!(
            got,
            [("pg_crontab[1]", 7), ("node_crontab[0]", 9)],
            "{:?}",
            err.findings
        );
    }

    #[test]
    fn baselines_are_read_from_beside_the_inventory() {
        let text = "all:\n  children:\n    pg-x:\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars:\n        pg_cluster: pg-x\n        pg_databases:\n          - { name: app, baseline: app.sql }\n  vars:\n    admin_ip: 10.0.0.1\n    node_repo_modules: node\n";
        let dir = tempfile::tempdir().unwrap();
        // Missing: exit 2 at the key, naming where it looked.
        let err = load_str_in("x.yml", text, Some(dir.path())).unwrap_err();
        let f = &err.findings[0];
        assert_eq!(
            (f.key.as_str(), f.line),
            ("pg_databases[0].baseline", 8),
            "{f:?}"
        );
        assert!(f.message.contains("files/app.sql"), "{}", f.message);
        // Pigsty's files/ first, then beside the inventory.
        std::fs::write(dir.path().join("app.sql"), "SELECT 2;").unwrap();
        let fleet = load_str_in("x.yml", text, Some(dir.path())).unwrap().fleet;
        let db = &fleet.nodes[0].pg.as_ref().unwrap().params.pg_databases[0];
        assert_eq!(db.baseline_sql.as_deref(), Some("SELECT 2;"));
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/app.sql"), "SELECT 1;").unwrap();
        let fleet = load_str_in("x.yml", text, Some(dir.path())).unwrap().fleet;
        let db = &fleet.nodes[0].pg.as_ref().unwrap().params.pg_databases[0];
        assert_eq!(db.baseline_sql.as_deref(), Some("SELECT 1;"));
        // Not text; and an inventory with no directory cannot name files.
        std::fs::write(dir.path().join("files/app.sql"), [0xff, 0xfe, 0]).unwrap();
        let err = load_str_in("x.yml", text, Some(dir.path())).unwrap_err();
        assert!(
            err.findings[0].message.contains("not UTF-8"),
            "{:?}",
            err.findings
        );
        let err = load_str("x.yml", text).unwrap_err();
        assert!(
            err.findings[0]
                .message
                .contains("beside the inventory file"),
            "{:?}",
            err.findings
        );
        // An inventory of a checkout's conf/ha/ finds the checkout's files/.
        let checkout = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkout.path().join("conf/ha")).unwrap();
        std::fs::create_dir(checkout.path().join("files")).unwrap();
        std::fs::write(checkout.path().join("files/app.sql"), "SELECT 3;").unwrap();
        let fleet = load_str_in("x.yml", text, Some(&checkout.path().join("conf/ha")))
            .unwrap()
            .fleet;
        let db = &fleet.nodes[0].pg.as_ref().unwrap().params.pg_databases[0];
        assert_eq!(db.baseline_sql.as_deref(), Some("SELECT 3;"));
    }

    #[test]
    fn extensions_and_preloads_resolve_to_packages_or_fail_at_their_line() {
        let text = "all:\n  children:\n    pg-x:\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars:\n        pg_cluster: pg-x\n        pg_libs: 'timescaledb, pg_cron, pg_stat_statements, auto_explain'\n        pg_extensions: [ postgis, 'pgvector' ]\n        pg_databases:\n          - { name: app, extensions: [ { name: vector }, timescaledb, pg_cron ] }\n  vars:\n    admin_ip: 10.0.0.1\n    node_repo_modules: node\n";
        let fleet = load_str("x.yml", text).unwrap().fleet;
        let pg = fleet.nodes[0].pg.as_ref().unwrap();
        assert_eq!(
            pg.packages,
            [
                "postgresql-17-cron",
                "postgresql-17-pgvector",
                "postgresql-17-postgis-3",
                "postgresql-17-repack",
                "postgresql-17-timescaledb"
            ],
            "pg_repack comes from Pigsty's pg_default_extensions"
        );
        // A typo in pg_default_extensions: its own line, the near name.
        let err = load_str(
            "x.yml",
            &text.replace(
                "        pg_databases:",
                "        pg_default_extensions: [ pg_trgm, { name: pg_stat_statments, schema: monitor } ]\n        pg_databases:",
            ),
        )
        .unwrap_err();
        let f = &err.findings[0];
        assert_eq!(
            (f.key.as_str(), f.line),
            ("pg_default_extensions[1]", 9),
            "{f:?}"
        );
        assert!(
            f.help
                .as_deref()
                .unwrap_or_default()
                .contains("`pg_stat_statements`"),
            "{f:?}"
        );
        // A typo in a database's extension list: its own line, and the near name.
        let err = load_str(
            "x.yml",
            &text.replace("timescaledb, pg_cron ]", "timescaledb, pg_crn ]"),
        )
        .unwrap_err();
        let f = &err.findings[0];
        assert_eq!(
            (f.key.as_str(), f.line),
            ("pg_databases[0].extensions[2]", 10),
            "{f:?}"
        );
        assert!(
            f.help.as_deref().unwrap_or_default().contains("`pg_cron`"),
            "{f:?}"
        );
        // Debian 12 does not package pgvector or timescaledb: refused, naming them.
        let err = load_str("x.yml", &format!("{text}    node_base: debian12\n")).unwrap_err();
        let keys: Vec<&str> = err.findings.iter().map(|f| f.key.as_str()).collect();
        assert!(
            keys.contains(&"pg_extensions[1]") && keys.contains(&"pg_libs"),
            "{keys:?}"
        );
        // An unknown preload library.
        let err = load_str(
            "x.yml",
            &text.replace("pg_cron, pg_stat", "pg_crom, pg_stat"),
        )
        .unwrap_err();
        assert_eq!(
            (err.findings[0].key.as_str(), err.findings[0].line),
            ("pg_libs", 7)
        );
    }

    #[test]
    fn other_kernels_are_refused_by_name() {
        let text = "all:\n  children:\n    pg-x:\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars: { pg_cluster: pg-x, pg_mode: mssql }\n";
        let err = load_str("m.yml", text).unwrap_err();
        let f = &err.findings[0];
        assert_eq!((f.key.as_str(), f.line), ("pg_mode", 5), "{f:?}");
        assert!(f.message.contains("Babelfish"), "{}", f.message);
        assert!(load_str("m.yml", &text.replace("mssql", "pgsql")).is_ok());
    }

    #[test]
    fn rto_plans_are_read_and_unknown_names_refused() {
        let text = "all:\n  children:\n    pg-x:\n      hosts: { 10.0.0.1: { pg_seq: 1, pg_role: primary } }\n      vars: { pg_cluster: pg-x }\n  vars:\n    pg_rto: lab\n    pg_rto_plan:\n      lab: [ 40, 5, 10, 30, 5, '5s', '0.5s', '5s', 2, 4 ]\n";
        let loaded = load_str("lab.yml", text).unwrap();
        let p = &loaded.fleet.nodes[0].pg.as_ref().unwrap().params;
        assert_eq!(p.rto_timings().ttl, 40);
        let c = p.rto_checks().unwrap();
        assert_eq!(
            (c.inter_ms, c.fastinter_ms, c.rise, c.fall),
            (5000, 500, 2, 4)
        );

        // Pigsty would quietly use `norm`; a name the plans lack is an error at its line.
        let err = load_str("lab.yml", &text.replace("pg_rto: lab", "pg_rto: quick")).unwrap_err();
        let f = err
            .findings
            .iter()
            .find(|f| f.key == "pg_rto")
            .expect("a pg_rto finding");
        assert_eq!(f.line, 7, "{f:?}");
        assert!(
            f.message.contains("`quick`") && f.message.contains("lab"),
            "{}",
            f.message
        );

        // A malformed entry is refused at pg_rto_plan.
        let err = load_str("lab.yml", &text.replace("'5s', '0.5s'", "'5s', 'soon'")).unwrap_err();
        assert!(
            err.findings
                .iter()
                .any(|f| f.key.starts_with("pg_rto_plan") && f.message.contains("fastinter")),
            "{:?}",
            err.findings
        );
    }

    /// Patroni's retry budget against etcd's Raft timing: a primary that cannot reach
    /// etcd for retry_timeout demotes itself, and losing the Raft leader costs etcd up
    /// to about three election timeouts. Warned at pg_rto; Pigsty's defaults pass.
    #[test]
    fn retry_timeout_shorter_than_etcd_elections_is_warned() {
        let text = |plan: &str, election: u32| {
            format!(
                "all:\n  children:\n    etcd:\n      hosts: {{ 10.0.0.1: {{ etcd_seq: 1 }} }}\n      vars: {{ etcd_cluster: etcd }}\n    pg-x:\n      hosts: {{ 10.0.0.1: {{ pg_seq: 1, pg_role: primary }} }}\n      vars: {{ pg_cluster: pg-x }}\n  vars:\n    etcd_election_timeout: {election}\n    etcd_heartbeat_interval: 500\n    pg_rto: lab\n    pg_rto_plan:\n      lab: {plan}\n"
            )
        };
        let warned = |plan: &str, election: u32| -> Vec<crate::diag::Finding> {
            load_str("lab.yml", &text(plan, election))
                .unwrap()
                .warnings
                .into_iter()
                .filter(|f| f.key == "pg_rto")
                .collect()
        };
        let norm = "[ 30, 5, 10, 25, 5, '2s', '1s', '2s', 3, 3 ]";
        let w = warned(norm, 5000);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 12, "{:?}", w[0]);
        assert!(w[0].message.contains("retry_timeout 10 s") && w[0].message.contains("5000 ms"));
        // 20 s outlasts three 5 s elections; 10 s outlasts three of etcd's default 1 s.
        assert!(warned("[ 45, 5, 20, 25, 5, '6s', '2s', '6s', 3, 3 ]", 5000).is_empty());
        assert!(warned(norm, 2500).is_empty());
    }

    /// Inputs the fuzzer's review found (fuzz/findings): small files whose aliases
    /// would expand into every host. They must be refused, not exhaust the machine.
    #[test]
    fn alias_amplification_is_refused() {
        for (name, text) in [
            (
                "per-host-clone-oom.yml",
                include_str!("../../fuzz/findings/per-host-clone-oom.yml"),
            ),
            (
                "per-host-reread-timeout.yml",
                include_str!("../../fuzz/findings/per-host-reread-timeout.yml"),
            ),
        ] {
            let err = load_str(name, text).unwrap_err();
            assert!(
                err.findings.iter().any(|f| f.message.contains("alias")),
                "{name}: {:?}",
                err.findings
            );
        }
    }

    #[test]
    fn defaults_parse() {
        // The built-in defaults are part of every load; a broken file must fail here.
        assert!(
            yaml::parse(include_str!("../model/defaults.yml"))
                .unwrap()
                .is_some()
        );
    }
}
