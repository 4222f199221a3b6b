//! `node_crontab` and `pg_crontab` run on schedule: the rendered `/etc/crontab`,
//! `/etc/cron.d/pigsty-node` and `/etc/cron.d/pigsty-pgsql` are read by Debian's
//! real `cron` (installed by ci/setup.sh), in a private mount namespace where they
//! stand in for the host's files, and each job fires as its user within a minute.
//! Root only (mounts, and cron runs jobs as other users): ignored unless asked for.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pigsty::compile::compile;
use pigsty::inventory::load_str;

/// One PGSQL node whose jobs touch files in `dir`, every minute.
fn inventory(dir: &Path, overwrite: bool) -> String {
    let d = dir.display();
    format!(
        "all:\n  children:\n    etcd: {{ hosts: {{ 10.0.0.1: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-c:\n      hosts: {{ 10.0.0.1: {{ pg_seq: 1, pg_role: primary }} }}\n      vars:\n        pg_cluster: pg-c\n        pg_crontab: [ '* * * * * id -un > {d}/pg-job' ]\n  vars:\n    admin_ip: 10.0.0.1\n    node_repo_modules: node\n    node_crontab_overwrite: {overwrite}\n    node_crontab: [ '* * * * * root id -un > {d}/node-job' ]\n"
    )
}

/// The rendered cron files of the node, by target path.
fn cron_files(text: &str) -> Vec<(String, Vec<u8>, u32)> {
    let loaded = load_str("cron.yml", text).unwrap_or_else(|e| panic!("{e:?}"));
    let node = &loaded.fleet.nodes[0];
    let compiled = compile(&loaded.fleet, node).unwrap();
    compiled
        .files
        .iter()
        .filter(|f| f.path == "/etc/crontab" || f.path.starts_with("/etc/cron.d/"))
        .map(|f| (f.path.clone(), f.content.clone(), f.mode))
        .collect()
}

/// Run cron in a mount namespace where `/etc/crontab` and `/etc/cron.d` are the
/// rendered ones, until every file of `want` exists in `dir` (at most 150 s: jobs
/// fire at the start of a minute). Returns what each file holds.
fn run_cron(files: &[(String, Vec<u8>, u32)], dir: &Path, want: &[&str]) -> Vec<String> {
    let etc = dir.join("etc");
    std::fs::create_dir_all(etc.join("cron.d")).unwrap();
    // Debian's crontab stays when node_crontab_overwrite is false: start from it.
    std::fs::copy("/etc/crontab", etc.join("crontab")).unwrap();
    for (path, content, mode) in files {
        let local = etc.join(path.trim_start_matches("/etc/"));
        std::fs::write(&local, content).unwrap();
        std::fs::set_permissions(&local, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let script = format!(
        "set -e; mount --bind {etc}/crontab /etc/crontab; mount --bind {etc}/cron.d /etc/cron.d; \
         mount -t tmpfs tmpfs /run; mkdir -p /run/cron; \
         mount -t tmpfs -o mode=1730 tmpfs /var/spool/cron/crontabs; exec cron -f -L 15",
        etc = etc.display()
    );
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    let done = || want.iter().all(|w| out.join(w).is_file());
    while !done() && Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
            panic!("cron exited ({status}): {err}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = child.kill();
    let mut err = String::new();
    let _ = child.wait();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
    want.iter()
        .map(|w| {
            std::fs::read_to_string(out.join(w))
                .unwrap_or_else(|_| panic!("{w} did not run within 150 s; cron said:\n{err}"))
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
#[ignore = "needs root: mounts over /etc/crontab in a private namespace and runs cron"]
fn crontab_jobs_fire_as_their_users() {
    support::require_root("mount namespaces and cron");
    support::require_tools(&["/usr/sbin/cron", "/usr/bin/unshare"]);
    // Overwrite (Pigsty's default): node jobs in /etc/crontab, dbsu jobs in cron.d.
    // Append: Debian's /etc/crontab stays, node jobs go beside it. Both crons run at
    // once, each in its own namespace, so the test waits for one minute, not two.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let overwrite = cron_files(&inventory(&a.path().join("out"), true));
    let append = cron_files(&inventory(&b.path().join("out"), false));
    let paths = |files: &[(String, Vec<u8>, u32)]| -> Vec<String> {
        files.iter().map(|f| f.0.clone()).collect()
    };
    assert_eq!(
        paths(&overwrite),
        ["/etc/cron.d/pigsty-pgsql", "/etc/crontab"]
    );
    assert_eq!(
        paths(&append),
        ["/etc/cron.d/pigsty-node", "/etc/cron.d/pigsty-pgsql"]
    );
    for (path, _, mode) in overwrite.iter().chain(&append) {
        assert_eq!(
            *mode, 0o644,
            "{path}: cron refuses group- or world-writable files"
        );
    }
    std::thread::scope(|s| {
        let one = s.spawn(|| run_cron(&overwrite, a.path(), &["node-job", "pg-job"]));
        let two = s.spawn(|| run_cron(&append, b.path(), &["node-job", "pg-job"]));
        assert_eq!(
            one.join().unwrap(),
            ["root", "postgres"],
            "each job runs as its user"
        );
        assert_eq!(two.join().unwrap(), ["root", "postgres"]);
    });
}
