//! The agent's MinIO steps against the MinIO STAND-IN in tests/minio_standin (no
//! MinIO-compatible server can be installed here). The stand-in runs as its own
//! process, started through the agent's service manager from the `minio_server_bin`
//! the inventory names, exactly as a user points it at MinIO, RustFS or Silo.

mod minio_standin;
mod support;

use std::time::{Duration, Instant};

use pigsty::agent::minio::{Made, S3, create_bucket};
use pigsty::agent::retry::Attempt;
use pigsty::agent::service::ProcessSpec;
use support::{TestNode, free_port};

/// Not a test: the stand-in server's entry point when the harness starts it.
#[test]
fn minio_standin_server() {
    minio_standin::run_if_asked();
}

fn inventory(net: &str, port: u16, members: usize, extra: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut hosts = String::new();
    for i in 1..=members {
        hosts.push_str(&format!("        {net}.{i}: {{ minio_seq: {i} }}\n"));
    }
    format!(
        "all:
  children:
    minio:
      hosts:
{hosts}      vars:
        minio_cluster: minio
        minio_port: {port}
        minio_admin_port: {}
        minio_data: /data/minio
        minio_server_bin: {}
{extra}  vars:
    admin_ip: {net}.1
    node_ntp_enabled: false
",
        free_port(),
        exe.display()
    )
}

/// Render member `i` and define `minio.service` as the server binary node.json names.
fn member(
    base: &std::path::Path,
    dir: &str,
    inv: &str,
    net: &str,
    members: usize,
    i: usize,
) -> TestNode {
    let node = TestNode::render(base, dir, inv, &format!("minio-{i}"));
    let doc = pigsty::agent::input::NodeJson::load(&node.root).unwrap();
    let m = doc.minio.expect("a MinIO member");
    let hosts: Vec<String> = (1..=members)
        .map(|k| format!("minio-{k}.pigsty={net}.{k}"))
        .collect();
    node.services.define(
        "minio.service",
        ProcessSpec {
            program: m.server_bin.into(),
            args: [
                "minio_standin_server",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ]
            .map(String::from)
            .to_vec(),
            env_files: vec![node.root.join("etc/default/minio")],
            env: vec![
                (minio_standin::ENV_FLAG.into(), "1".into()),
                ("MINIO_STANDIN_IP".into(), format!("{net}.{i}")),
                ("MINIO_STANDIN_HOSTS".into(), hosts.join(",")),
                (
                    "MINIO_STANDIN_DATA".into(),
                    node.root.join("data/minio").display().to_string(),
                ),
            ],
            log: node.root.join("minio.log"),
            ..ProcessSpec::default()
        },
    );
    node
}

#[test]
fn three_members_start_and_the_first_creates_buckets() {
    let t0 = Instant::now();
    let net = "127.0.6";
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(net, port, 3, "");
    let nodes: Vec<TestNode> = (1..=3)
        .map(|i| member(tmp.path(), &format!("n{i}"), &inv, net, 3, i))
        .collect();
    let wait = Duration::from_secs(20);

    // 1. All three boot at once; the first is killed after its first bucket.
    std::thread::scope(|s| {
        let runs: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                s.spawn(move || {
                    let mut opts = n.options(wait);
                    if i == 0 {
                        opts.crash_at = Some("minio-buckets:pgsql".into());
                    }
                    n.firstboot(&opts)
                })
            })
            .collect();
        for (i, run) in runs.into_iter().enumerate() {
            let result = run.join().unwrap();
            if i == 0 {
                assert!(format!("{:#}", result.unwrap_err()).contains("minio-buckets:pgsql"));
            } else {
                let state =
                    result.unwrap_or_else(|e| panic!("{e:#}\n{}", nodes[i].log("minio.log")));
                assert!(state.done && !state.steps.contains_key("minio-buckets"));
            }
        }
    });
    // 2. Resumed: the bucket made before the kill answers 409 and counts as there.
    let state = nodes[0]
        .firstboot(&nodes[0].options(wait))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let detail = &state.steps["minio-buckets"].detail;
    assert!(
        detail.contains("created [meta, data], already there [pgsql]"),
        "{detail}"
    );
    assert!(detail.contains("no MinIO admin API"), "{detail}");
    let data = nodes[0].root.join("data/minio");
    for b in ["pgsql", "meta", "data"] {
        assert!(data.join(b).is_dir(), "bucket {b}");
    }
    assert!(data.join("meta/.versioning").exists(), "versioning of meta");

    // 3. Wrong credentials: refused at once (403), not waited on.
    let base = format!("http://{net}.1:{port}");
    let bad = S3::new(&base, "minioadmin", "Wrong.Secret", Duration::from_secs(2)).unwrap();
    match create_bucket(&bad, "x", false) {
        Attempt::Fatal(e) => assert!(format!("{e:#}").contains("SignatureDoesNotMatch"), "{e:#}"),
        other => panic!("{other:?}"),
    }
    let unknown = S3::new(&base, "nobody", "x", Duration::from_secs(2)).unwrap();
    assert!(
        matches!(create_bucket(&unknown, "x", false), Attempt::Fatal(e) if format!("{e:#}").contains("InvalidAccessKeyId"))
    );
    let good = S3::new(&base, "minioadmin", "S3User.MinIO", Duration::from_secs(2)).unwrap();
    assert!(matches!(
        create_bucket(&good, "pgsql", false),
        Attempt::Ready(Made::Existed)
    ));

    // The agent with a wrong secret in its node.json stops at the first bucket.
    let wrong_inv = inventory(net, port, 3, "        minio_secret_key: Wrong.Secret\n");
    let wrong = member(tmp.path(), "n1-wrong", &wrong_inv, net, 3, 1);
    let start = Instant::now();
    let err = wrong
        .firstboot(&wrong.options(Duration::from_secs(20)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        msg.contains("step minio-buckets") && msg.contains("HTTP 403"),
        "{msg}"
    );
    // The peer and its answer.
    assert!(
        msg.contains(&format!("at {base}: PUT {base}/pgsql"))
            && msg.contains("SignatureDoesNotMatch"),
        "{msg}"
    );
    eprintln!("total: {:?}", t0.elapsed());
}

/// One member of three: no write quorum; the wait stops at its bound and says why.
#[test]
fn members_that_never_appear_time_out() {
    let net = "127.0.7";
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(net, free_port(), 3, "");
    let lonely = member(tmp.path(), "n1", &inv, net, 3, 1);
    let start = Instant::now();
    let err = lonely
        .firstboot(&lonely.options(Duration::from_secs(3)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(
        msg.contains("step minio") && msg.contains("/minio/health/cluster"),
        "{msg}"
    );
    assert!(msg.contains("1 of 3 members live"), "{msg}");
}
