//! PostgreSQL 17 of the Debian 13 layer itself, with the extensions an inventory asks
//! for. The host is Debian 12 (PostgreSQL 15), so the node's package layer is built
//! (or taken from the cache) exactly as `build-image` makes it, unpacked, and the
//! server runs inside a chroot of it in a private mount namespace: initdb with the
//! rendered options, the rendered hba and parameters (timescaledb and pg_cron
//! preloaded), then the rendered SQL, whose CREATE EXTENSION of postgis, vector,
//! timescaledb and pg_cron must succeed in the database that lists them.
//!
//! Needs root (chroot, mounts), mmdebstrap and the Debian 13 archive: ignored unless
//! asked for (`--include-ignored`; ci/test.sh does). Every wait is bounded.

mod support;

use std::path::PathBuf;
use std::process::Command;

use pigsty::catalog::Catalog;
use pigsty::compile::compile;
use pigsty::image::layer;
use pigsty::inventory::load_str;
use serde_json::Value;

const INVENTORY: &str = "all:
  children:
    etcd: { hosts: { 10.77.0.11: { etcd_seq: 1 } }, vars: { etcd_cluster: etcd } }
    pg-ext:
      hosts: { 10.77.0.11: { pg_seq: 1, pg_role: primary } }
      vars:
        pg_cluster: pg-ext
        pg_conf: tiny.yml
        pg_libs: 'timescaledb, pg_cron, pg_stat_statements, auto_explain'
        pg_extensions: [ postgis, pgvector ]
        pg_parameters: { cron.database_name: app }
        pg_users: [ { name: dbuser_app, password: DBUser.App, roles: [ dbrole_admin ] } ]
        pg_databases:
          - { name: app, owner: dbuser_app, extensions: [ postgis, { name: vector }, timescaledb, pg_cron ] }
  vars:
    admin_ip: 10.77.0.11
    node_base: debian13
    node_repo_modules: node
";

fn cache() -> PathBuf {
    std::env::var_os("PIGSTY_CACHE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pigsty-cache"),
        PathBuf::from,
    )
}

/// Run a command to completion within `secs`; its output, or a panic naming it.
fn run(cmd: &mut Command, secs: u64) -> String {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The rendered server parameters as postgresql.conf lines, with what a throwaway
/// server inside the test's chroot needs instead: its socket, logs and no archive.
fn server_conf(patroni: &Value) -> String {
    let mut params = support::rendered_parameters(patroni);
    for (k, v) in [
        ("listen_addresses", ""),
        ("port", "5432"),
        ("unix_socket_directories", "/var/tmp/pgtest"),
        ("log_directory", "/var/tmp/pgtest/log"),
        ("fsync", "off"),
        ("archive_command", "/bin/true"),
    ] {
        params.insert(k.into(), v.into());
    }
    params
        .iter()
        .map(|(k, v)| format!("{k} = '{}'\n", v.replace('\'', "''")))
        .collect()
}

/// What runs inside the chroot: initdb, start, the rendered SQL, a report, stop.
const SCRIPT: &str = r#"set -eu
BIN=/usr/lib/postgresql/17/bin
T=/var/tmp/pgtest
install -d -o postgres -g postgres $T $T/log
as() { runuser -u postgres -- "$@"; }
as $BIN/initdb --no-sync -U postgres -D $T/data $INITDB_ARGS >/dev/null
cat /var/tmp/pigsty-test.conf >> $T/data/postgresql.conf
cp /var/tmp/pigsty-test-hba.conf $T/data/pg_hba.conf
chown postgres:postgres $T/data/pg_hba.conf
as $BIN/pg_ctl start -w -t 120 -D $T/data -l $T/server.log >/dev/null || { cat $T/server.log; exit 1; }
psql() { as /usr/bin/psql -X -h $T -p 5432 -v ON_ERROR_STOP=1 "$@"; }
ok=0
for f in /etc/pigsty/sql/10-roles.sql /etc/pigsty/sql/15-template.sql /etc/pigsty/sql/20-databases.sql; do
  psql -d postgres -q -f $f >/dev/null || ok=1
done
echo "VERSION $(psql -d postgres -Atc 'SHOW server_version_num')"
echo "PRELOAD $(psql -d postgres -Atc 'SHOW shared_preload_libraries')"
psql -d app -Atc "SELECT 'EXT ' || extname FROM pg_extension ORDER BY 1"
psql -d app -Atc "SELECT 'POSTGIS ' || postgis_lib_version()"
psql -d app -Atc "SELECT 'VECTOR ' || ('[1,2]'::vector <-> '[4,6]'::vector)"
psql -d app -Atc "SELECT 'CRON ' || cron.schedule('pigsty-test', '0 0 * * *', 'SELECT 1')"
as $BIN/pg_ctl stop -w -t 60 -D $T/data -m fast >/dev/null
exit $ok
"#;

#[test]
#[ignore = "needs root, mmdebstrap and the Debian 13 archive: builds the node's package layer"]
fn postgres_17_of_the_debian13_layer_creates_the_inventorys_extensions() {
    support::require_root("chroot and mounts");
    support::require_tools(&["/usr/bin/mmdebstrap", "/usr/bin/unshare"]);

    // The node's plan: PostgreSQL 17 and the extension packages, from the catalog.
    let loaded = load_str("ext.yml", INVENTORY).unwrap();
    let node = &loaded.fleet.nodes[0];
    let compiled = compile(&loaded.fleet, node).unwrap();
    let packages = &compiled.plan.packages;
    for p in [
        "postgresql-17",
        "postgresql-17-postgis-3",
        "postgresql-17-pgvector",
        "postgresql-17-timescaledb",
        "postgresql-17-cron",
    ] {
        assert!(packages.contains(&p.to_string()), "{p} not in {packages:?}");
    }

    // The layer build-image would use, unpacked with the node's rendered files.
    let catalog = Catalog::base(&compiled.plan.image.name).unwrap();
    let cache = cache();
    let tool = layer::mmdebstrap_version_cached(&cache).unwrap();
    let recipe = layer::Recipe::new(catalog, packages, pigsty::image::default_epoch(), &tool);
    let tar = layer::ensure(&recipe, &cache, false).unwrap();
    let root = tempfile::tempdir().unwrap();
    run(
        Command::new("tar")
            .args(["-xpf"])
            .arg(&tar)
            .args(["--numeric-owner", "-C"])
            .arg(root.path()),
        600,
    );
    let mut patroni = Value::Null;
    for f in &compiled.files {
        let path = root.path().join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.content).unwrap();
        if f.path == "/etc/patroni/patroni.yml" {
            let text = String::from_utf8(f.content.clone()).unwrap();
            let yaml = pigsty::inventory::yaml::parse(&text).unwrap().unwrap();
            patroni = yaml.to_json_with(&|s: &str| s.to_string());
        }
    }
    let tmp = root.path().join("var/tmp");
    std::fs::write(tmp.join("pigsty-test.conf"), server_conf(&patroni)).unwrap();
    let hba: Vec<&str> = patroni["postgresql"]["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    std::fs::write(tmp.join("pigsty-test-hba.conf"), hba.join("\n") + "\n").unwrap();
    assert!(
        root.path()
            .join("usr/lib/postgresql/17/bin/postgres")
            .is_file(),
        "the layer holds PostgreSQL 17"
    );
    assert!(
        !root.path().join("usr/lib/postgresql/15").exists(),
        "and no other major"
    );

    // The server, inside the chroot, in a mount namespace that vanishes with it.
    let chroot = format!(
        "mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && \
         INITDB_ARGS='{args}' chroot {r} /bin/sh -c \"$0\"",
        r = root.path().display(),
        args = support::initdb_args(&patroni).join(" "),
    );
    let out = run(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(&chroot)
            .arg(SCRIPT),
        900,
    );
    eprintln!("{out}");
    let lines: Vec<&str> = out.lines().collect();
    let has = |l: &str| lines.iter().any(|x| x.trim() == l);
    assert!(
        lines.iter().any(|l| l.starts_with("VERSION 17")),
        "PostgreSQL 17 runs:\n{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("PRELOAD timescaledb, pg_cron")),
        "timescaledb and pg_cron preloaded:\n{out}"
    );
    for ext in ["postgis", "vector", "timescaledb", "pg_cron"] {
        assert!(has(&format!("EXT {ext}")), "{ext} created in app:\n{out}");
    }
    // Pigsty's pg_default_extensions, created in template1, are in app too; pg_repack
    // is the one that is not part of postgresql-17 itself.
    assert!(
        packages.contains(&"postgresql-17-repack".to_string()),
        "{packages:?}"
    );
    for ext in ["pg_stat_statements", "pg_trgm", "intarray", "pg_repack"] {
        assert!(
            has(&format!("EXT {ext}")),
            "{ext} inherited from template1:\n{out}"
        );
    }
    assert!(has("VECTOR 5"), "pgvector computes:\n{out}");
    assert!(lines.iter().any(|l| l.starts_with("POSTGIS 3.")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("CRON ")), "{out}");
}
