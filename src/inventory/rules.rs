//! Rules on the values that become file names, unit and config lines, and directories
//! a service is given: names (Pigsty's own patterns, or a stricter one said here),
//! paths (absolute, normalised, outside the system's directories) and ports (1 to
//! 65535, one listener per port on a node). They are checked at `inventory check`, at
//! the line that sets each value, before anything is written; the templates escape
//! every value for their format as a second line of defence.

use std::collections::BTreeMap;

use super::reader::{Step, VarReader};
use crate::model::Node;

/// A cluster name: Pigsty's `^[A-Za-z0-9-]+$`.
pub(super) fn is_cluster_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A host name: labels of letters, digits and `-` (not first or last in a label)
/// joined by dots, at most 63 bytes a label and 64 in all (Linux's `HOST_NAME_MAX`).
pub(super) fn is_host_name(s: &str) -> bool {
    s.len() <= 64 && is_dns_name(s)
}

/// A DNS name: labels of letters, digits and `-` (not at either end), 63 bytes each,
/// joined by dots, 253 bytes in all.
pub(super) fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A database or schema name: `^[A-Za-z_][A-Za-z0-9_-]{0,62}$`, stricter than
/// PostgreSQL (which takes any quoted name) so a name is safe in every file it lands in.
pub(super) fn is_object_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.len() <= 63
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Directories a service is never given, with everything under them.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/tmp",
    "/usr",
    "/var/cache",
    "/var/lib/apt",
    "/var/lib/dpkg",
    "/var/lib/systemd",
    "/var/log",
    "/var/tmp",
];

/// Directories that hold other things, so never a service's own (what is below them
/// may be).
const SHARED_DIRS: &[&str] = &[
    "/", "/home", "/media", "/mnt", "/opt", "/srv", "/var", "/var/lib",
];

/// Why `path` cannot be a directory a service owns, or None. It must be absolute and
/// normalised (no `.`, `..`, empty component or trailing `/`), of letters, digits and
/// `._-/` only (it lands in tmpfiles.d lines and unit files), and outside the
/// system's directories.
pub(crate) fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some("is not an absolute path".into());
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
    {
        return Some(format!(
            "holds {c:?}: a directory path here takes letters, digits and `._-/` only"
        ));
    }
    if path != "/"
        && (path.ends_with('/')
            || path[1..]
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == ".."))
    {
        return Some(
            "is not normalised (an empty, `.` or `..` component, or a trailing `/`)".into(),
        );
    }
    if SHARED_DIRS.contains(&path) {
        return Some("is a system directory shared by other things".into());
    }
    SYSTEM_TREES
        .iter()
        .find(|t| {
            path == **t
                || path
                    .strip_prefix(**t)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .map(|t| format!("is in the system directory {t}"))
}

/// One listener of a node: its port, the parameter that sets it (as said in an
/// error) and where to point.
struct Listener {
    port: u16,
    what: String,
    loc_key: &'static str,
    path: Vec<Step<'static>>,
}

/// Every rule of this module on one host's values; false after reporting.
pub(super) fn check_node(r: &mut VarReader<'_>, node: &Node) -> bool {
    let before = r.errors();
    names(r, node);
    paths(r, node);
    ports(r, node);
    if node.node.node_ip_prefix > 32 {
        let loc = r.loc("node_ip_prefix");
        r.error(
            loc,
            "node_ip_prefix",
            format!(
                "node_ip_prefix {} is not a prefix length (0 to 32)",
                node.node.node_ip_prefix
            ),
        );
    }
    if let Some(disk) = &node.node.node_disk
        && !is_device_path(disk)
    {
        let loc = r.loc("node_disk");
        r.error(
            loc,
            "node_disk",
            format!(
                "node_disk {disk:?} is not a device path (/dev/..., e.g. /dev/nvme0n1 or \
                 /dev/disk/by-id/...)"
            ),
        );
    }
    r.errors() == before
}

/// A device path a kernel command line can carry: `/dev/` and a name without
/// spaces, quotes or `..`.
fn is_device_path(p: &str) -> bool {
    p.strip_prefix("/dev/").is_some_and(|rest| {
        !rest.is_empty()
            && !rest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.:+@".contains(&b))
    })
}

fn names(r: &mut VarReader<'_>, node: &Node) {
    // The node's name, and a `nodename` it was given but does not use (a PGSQL node
    // takes its instance name): both checked.
    let given = r.get::<Option<String>>("nodename").flatten();
    let bad = [Some(node.nodename.clone()), given]
        .into_iter()
        .flatten()
        .find(|n| !is_host_name(n));
    if let Some(name) = bad {
        let loc = r.loc("nodename");
        r.error(
            loc,
            "nodename",
            format!(
                "`{name}` is not a host name: labels of letters, digits and `-` joined by \
                 dots, 64 bytes at most"
            ),
        );
    }
    let clusters = [
        ("node_cluster", Some(node.node_cluster.as_str())),
        (
            "minio_cluster",
            node.minio.as_ref().map(|m| m.cluster.as_str()),
        ),
        (
            "redis_cluster",
            node.redis.as_ref().map(|x| x.cluster.as_str()),
        ),
    ];
    for (key, value) in clusters {
        if let Some(v) = value.filter(|v| !is_cluster_name(v)) {
            let loc = r.loc(key);
            r.error(
                loc,
                key,
                format!(
                    "`{v}` is not a valid cluster name: expected letters, digits and `-` \
                     (matching ^[A-Za-z0-9-]+$)"
                ),
            );
        }
    }
    // A MinIO member's names go into /etc/hosts, MINIO_VOLUMES and its certificate.
    if let Some(m) = &node.minio {
        for (key, v) in [
            ("minio_node", &m.params.minio_node),
            ("minio_domain", &m.params.minio_domain),
        ] {
            if !is_dns_name(v) {
                let loc = r.loc(key);
                r.error(
                    loc,
                    key,
                    format!(
                        "`{v}` is not a DNS name: labels of letters, digits and `-` \
                         joined by dots, 253 bytes at most"
                    ),
                );
            }
        }
    }
    let Some(pg) = &node.pg else { return };
    let object = |s: &str| {
        format!("`{s}` is not a valid name here: expected ^[A-Za-z_][A-Za-z0-9_-]{{0,62}}$")
    };
    for (i, db) in pg.params.pg_databases.iter().enumerate() {
        if !is_object_name(&db.name) {
            let loc = r.loc_in("pg_databases", &[Step::Item(i), Step::Field("name")]);
            r.error(loc, &format!("pg_databases[{i}].name"), object(&db.name));
        }
        for (j, s) in db.schemas.iter().enumerate() {
            if !is_object_name(&s.name) {
                let loc = r.loc_in(
                    "pg_databases",
                    &[Step::Item(i), Step::Field("schemas"), Step::Item(j)],
                );
                r.error(
                    loc,
                    &format!("pg_databases[{i}].schemas[{j}]"),
                    object(&s.name),
                );
            }
        }
    }
    for (j, s) in pg.params.pg_default_schemas.iter().enumerate() {
        if !is_object_name(&s.name) {
            let loc = r.loc_in("pg_default_schemas", &[Step::Item(j)]);
            r.error(loc, &format!("pg_default_schemas[{j}]"), object(&s.name));
        }
    }
}

/// A directory a service is given: the variable, the steps into it, what to call it
/// in an error, and the path.
type Dir<'n> = (&'static str, Vec<Step<'n>>, String, String);

fn paths(r: &mut VarReader<'_>, node: &Node) {
    let mut dirs: Vec<Dir<'_>> = Vec::new();
    if let Some(pg) = &node.pg {
        let p = &pg.params;
        for (key, v) in [
            ("pg_namespace", &p.pg_namespace),
            ("pg_data", &p.pg_data),
            ("pg_fs_main", &p.pg_fs_main),
        ] {
            dirs.push((key, Vec::new(), key.to_string(), v.clone()));
        }
        for (name, repo) in &p.pgbackrest_repo {
            let local = matches!(repo.kind.as_deref(), None | Some("posix"));
            if let (true, Some(path)) = (local, &repo.path) {
                dirs.push((
                    "pgbackrest_repo",
                    vec![Step::Field(name), Step::Field("path")],
                    format!("pgbackrest_repo.{name}.path"),
                    path.clone(),
                ));
            }
        }
    }
    if let Some(e) = &node.etcd {
        dirs.push((
            "etcd_data",
            Vec::new(),
            "etcd_data".into(),
            e.params.etcd_data.clone(),
        ));
    }
    if let Some(m) = &node.minio {
        match crate::model::paths::minio_data_dirs(&m.params.minio_data) {
            Ok(each) => {
                for d in each {
                    dirs.push(("minio_data", Vec::new(), "minio_data".into(), d));
                }
            }
            Err(e) => {
                let loc = r.loc("minio_data");
                r.error(loc, "minio_data", format!("minio_data {e}"));
            }
        }
    }
    for (key, path, what, dir) in dirs {
        if let Some(problem) = path_problem(&dir) {
            let loc = r.loc_in(key, &path);
            r.error(loc, &what, format!("{what} `{dir}` {problem}"));
        }
    }
}

fn ports(r: &mut VarReader<'_>, node: &Node) {
    let mut all: Vec<Listener> = Vec::new();
    let mut add = |port: u16, what: &str, loc_key: &'static str, path: Vec<Step<'static>>| {
        all.push(Listener {
            port,
            what: what.to_string(),
            loc_key,
            path,
        })
    };
    let n = &node.node;
    if n.node_exporter_enabled.0 {
        add(
            n.node_exporter_port,
            "node_exporter_port",
            "node_exporter_port",
            vec![],
        );
    }
    if node.haproxy() {
        add(
            n.haproxy_exporter_port,
            "haproxy_exporter_port",
            "haproxy_exporter_port",
            vec![],
        );
        for (i, s) in node.node.haproxy_services.iter().enumerate() {
            add(
                s.port,
                &format!("haproxy_services[{i}] ({})", s.name),
                "haproxy_services",
                vec![Step::Item(i), Step::Field("port")],
            );
        }
    }
    if let Some(pg) = &node.pg {
        let p = &pg.params;
        add(p.pg_port, "pg_port", "pg_port", vec![]);
        add(
            p.pg_exporter_port,
            "pg_exporter_port",
            "pg_exporter_port",
            vec![],
        );
        if p.pgbouncer_enabled.0 {
            add(p.pgbouncer_port, "pgbouncer_port", "pgbouncer_port", vec![]);
        }
        if p.patroni_enabled.0 {
            add(p.patroni_port, "patroni_port", "patroni_port", vec![]);
        }
        if node.pgbouncer_exporter() {
            add(
                p.pgbouncer_exporter_port,
                "pgbouncer_exporter_port",
                "pgbouncer_exporter_port",
                vec![],
            );
        }
        for (key, services) in [
            ("pg_default_services", &p.pg_default_services),
            ("pg_services", &p.pg_services),
        ] {
            for (i, s) in services.iter().enumerate() {
                add(
                    s.port,
                    &format!("{key}[{i}] ({})", s.name),
                    key,
                    vec![Step::Item(i), Step::Field("port")],
                );
            }
        }
    }
    if let Some(e) = &node.etcd {
        add(e.params.etcd_port, "etcd_port", "etcd_port", vec![]);
        add(
            e.params.etcd_peer_port,
            "etcd_peer_port",
            "etcd_peer_port",
            vec![],
        );
    }
    if let Some(m) = &node.minio {
        add(m.params.minio_port, "minio_port", "minio_port", vec![]);
        add(
            m.params.minio_admin_port,
            "minio_admin_port",
            "minio_admin_port",
            vec![],
        );
    }
    if let Some(x) = &node.redis {
        let cluster = x.params.redis_mode == crate::model::RedisMode::Cluster;
        for port in x.instances.keys() {
            add(
                *port,
                &format!("redis_instances.{port}"),
                "redis_instances",
                vec![],
            );
            if cluster && let Some(bus) = port.checked_add(10000) {
                add(
                    bus,
                    &format!("redis_instances.{port} (its cluster bus, port + 10000)"),
                    "redis_instances",
                    vec![],
                );
            }
        }
        if x.params.redis_exporter_enabled.0 {
            add(
                x.params.redis_exporter_port,
                "redis_exporter_port",
                "redis_exporter_port",
                vec![],
            );
        }
    }
    if let Some(i) = &node.infra {
        let p = &i.params;
        add(p.nginx_port, "nginx_port", "nginx_port", vec![]);
        add(
            p.prometheus_port,
            "prometheus_port",
            "prometheus_port",
            vec![],
        );
        add(
            p.alertmanager_port,
            "alertmanager_port",
            "alertmanager_port",
            vec![],
        );
        if p.blackbox_enabled.0 {
            add(p.blackbox_port, "blackbox_port", "blackbox_port", vec![]);
        }
        if p.pushgateway_enabled.0 {
            add(
                crate::model::PUSHGATEWAY_PORT,
                "Pushgateway (pushgateway_enabled)",
                "pushgateway_enabled",
                vec![],
            );
        }
        if node.grafana() {
            add(p.grafana_port, "grafana_port", "grafana_port", vec![]);
        }
    }
    if let Some(port) = node.log_receiver() {
        add(port, "vlogs_port", "vlogs_port", vec![]);
        add(
            crate::model::LOG_READER_PORT,
            "the log reader (journal-gatewayd, vlogs_enabled)",
            "vlogs_enabled",
            vec![],
        );
    }
    let mut taken: BTreeMap<u16, String> = BTreeMap::new();
    for l in all {
        let loc = r.loc_in(l.loc_key, &l.path);
        if l.port == 0 {
            r.error(
                loc,
                &l.what,
                format!("{}: port 0 is not a port to listen on (1 to 65535)", l.what),
            );
            continue;
        }
        if let Some(other) = taken.get(&l.port) {
            r.error(
                loc,
                &l.what,
                format!(
                    "{} listens on port {}, which {other} also takes on this node",
                    l.what, l.port
                ),
            );
            continue;
        }
        taken.insert(l.port, l.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["pg-test", "A1", "x"] {
            assert!(is_cluster_name(ok), "{ok}");
        }
        for bad in ["", "pg test", "pg\ntest", "pg_test", "a/b"] {
            assert!(!is_cluster_name(bad), "{bad:?}");
        }
        for ok in ["pg-test-1", "node.example.com", "a"] {
            assert!(is_host_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "-a", "a-", "a..b", "a b", &"x".repeat(65)] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
        for ok in ["meta", "_x", "app-2", "Test_DB"] {
            assert!(is_object_name(ok), "{ok}");
        }
        for bad in ["", "1db", "a b", "a\"b", "a;b", &"x".repeat(64)] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn device_paths() {
        for ok in [
            "/dev/sda",
            "/dev/nvme0n1",
            "/dev/disk/by-id/nvme-Samsung_SSD_980_S64@x:1",
        ] {
            assert!(is_device_path(ok), "{ok}");
        }
        for bad in [
            "sda",
            "/dev/",
            "/dev/../etc/passwd",
            "/dev/sda b",
            "/dev//sda",
            "/etc/x",
        ] {
            assert!(!is_device_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        for ok in [
            "/pg/data",
            "/data/postgres",
            "/data",
            "/var/lib/postgresql/17/main",
            "/srv/etcd",
        ] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in [
            "/",
            "/etc",
            "/etc/x",
            "/root/.ssh",
            "/usr/local/pg",
            "/var",
            "/var/lib",
            "/boot",
            "relative",
            "/a//b",
            "/a/./b",
            "/a/../etc",
            "/a/",
            "/a b",
            "/a\nb",
            "/home",
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
        // A prefix is not a parent.
        assert_eq!(path_problem("/etcd"), None);
        assert_eq!(path_problem("/rooted"), None);
    }
}
