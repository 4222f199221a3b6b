//! The agent's MinIO steps against the MinIO STAND-IN in tests/minio_standin (no
//! MinIO-compatible server can be installed here). The stand-in runs as its own
//! process, started through the agent's service manager from the `minio_server_bin`
//! the inventory names, exactly as a user points it at MinIO, RustFS or Silo.
//!
//! A custom main (harness = false): this binary is also that server. Started with
//! `MINIO_STANDIN=1` it serves instead of testing. The tests need no root and no
//! installed server, so they run in the plain tier.

mod minio_standin;
mod support;

use std::time::{Duration, Instant};

use pigsty::agent::minio::s3::{Made, S3, create_bucket};
use pigsty::agent::retry::Attempt;
use pigsty::agent::service::ServiceManager;
use support::processes::{ProcessSpec, Processes};
use support::{TestNode, free_port};

fn main() {
    // Started as minio.service by a test (see `member_with`): serve, never test.
    minio_standin::run_if_asked();
    support::run_tests(vec![
        support::test(
            "three_members_start_and_the_first_creates_buckets",
            three_members_start_and_the_first_creates_buckets,
        ),
        support::test(
            "members_that_never_appear_time_out",
            members_that_never_appear_time_out,
        ),
        support::test(
            "the_decryptor_opens_madmin_test_vectors",
            the_decryptor_opens_madmin_test_vectors,
        ),
        support::test("agent_encryption_round_trips", agent_encryption_round_trips),
        support::test(
            "users_and_policies_through_the_admin_api",
            users_and_policies_through_the_admin_api,
        ),
        // Root: pgBackRest runs in a private mount namespace whose /etc/hosts names
        // sss.pigsty; it is Debian's pgBackRest (ci/setup.sh installs it).
        support::ignored(
            "pgbackrest_verifies_minio_with_the_fleet_ca",
            pgbackrest_verifies_minio_with_the_fleet_ca,
        ),
        support::test(
            "the_test_process_manager_starts_once_and_stops",
            the_test_process_manager_starts_once_and_stops,
        ),
    ]);
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
    member_with(base, dir, inv, net, members, i, &[])
}

/// `member`, with more environment for the stand-in (`MINIO_STANDIN_ADMIN`).
fn member_with(
    base: &std::path::Path,
    dir: &str,
    inv: &str,
    net: &str,
    members: usize,
    i: usize,
    extra_env: &[(&str, &str)],
) -> TestNode {
    let node = TestNode::render(base, dir, inv, &format!("minio-{i}"));
    let doc = pigsty::plan::node_json::NodeJson::load(&node.root).unwrap();
    let m = doc.minio.expect("a MinIO member");
    let hosts: Vec<String> = (1..=members)
        .map(|k| format!("minio-{k}.pigsty={net}.{k}"))
        .collect();
    node.services.define(
        "minio.service",
        ProcessSpec {
            program: m.server_bin.into(),
            env_files: vec![node.root.join("etc/default/minio")],
            env: minio_standin::test_env(&node.root, &format!("{net}.{i}"), &hosts)
                .into_iter()
                .chain(
                    extra_env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                )
                .collect(),
            log: node.root.join("minio.log"),
            ..ProcessSpec::default()
        },
    );
    node
}

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

    // 3. The members serve https only, with the fleet CA's certificates.
    let base = format!("https://{net}.1:{port}");
    let ca = std::fs::read_to_string(nodes[0].root.join("etc/pki/ca.crt")).unwrap();
    plaintext_and_strangers_are_refused(&nodes[0], &base, &ca, tmp.path());
    let tls = || {
        pigsty::http::client_trusting(Duration::from_secs(2), Duration::from_secs(2), &ca).unwrap()
    };

    // 4. Wrong credentials: refused at once (403), not waited on.
    let bad = S3::new(&base, "minioadmin", "Wrong.Secret", tls());
    match create_bucket(&bad, "x", false) {
        Attempt::Fatal(e) => assert!(format!("{e:#}").contains("SignatureDoesNotMatch"), "{e:#}"),
        other => panic!("{other:?}"),
    }
    let unknown = S3::new(&base, "nobody", "x", tls());
    assert!(
        matches!(create_bucket(&unknown, "x", false), Attempt::Fatal(e) if format!("{e:#}").contains("InvalidAccessKeyId"))
    );
    let good = S3::new(&base, "minioadmin", "S3User.MinIO", tls());
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

/// What a member runs with (`minio_https` is Pigsty's default and every test fleet
/// has a CA), and what it refuses: plain HTTP, a client that does not trust the
/// fleet CA, an unsigned S3 request.
fn plaintext_and_strangers_are_refused(
    node: &TestNode,
    base: &str,
    ca: &str,
    scratch: &std::path::Path,
) {
    use pigsty::http;
    let env = std::fs::read_to_string(node.root.join("etc/default/minio")).unwrap();
    assert!(
        env.contains("MINIO_VOLUMES=\"https://minio-{1...3}.pigsty:")
            && env.contains("--certs-dir /etc/minio/certs"),
        "{env}"
    );
    let certs = node.root.join("etc/minio/certs");
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(certs.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("private.key"), 0o600);
    assert_eq!(mode("public.crt"), 0o644);
    assert_eq!(
        std::fs::read_to_string(certs.join("CAs/ca.crt")).unwrap(),
        ca
    );
    let tmpfiles =
        std::fs::read_to_string(node.root.join("etc/tmpfiles.d/pigsty-minio.conf")).unwrap();
    assert!(
        tmpfiles.contains("z /etc/minio/certs/private.key 0600 minio minio -"),
        "{tmpfiles}"
    );

    let t = Duration::from_secs(2);
    let live = "/minio/health/live";
    // The fleet CA's client is served.
    let trusted = http::client_trusting(t, t, ca).unwrap();
    assert_eq!(
        http::get(&trusted, &format!("{base}{live}")).unwrap().0,
        200
    );
    // Plain HTTP on the same port gets no answer: the TLS handshake fails.
    let plain = http::client(t, t).unwrap();
    let url = format!("{}{live}", base.replacen("https://", "http://", 1));
    match http::get(&plain, &url) {
        Err(_) => {}
        Ok((code, body)) => panic!("plain HTTP answered {code}: {body}"),
    }
    // A client trusting another CA refuses the member's certificate.
    let foreign = pigsty::pki::Pki::open_or_create(&scratch.join("foreign-pki")).unwrap();
    let stranger = http::client_trusting(t, t, foreign.ca_pem()).unwrap();
    let err = format!(
        "{:#}",
        http::get(&stranger, &format!("{base}{live}")).unwrap_err()
    );
    assert!(err.contains("certificate"), "{err}");
    // An S3 request without a signature is refused.
    let (code, body) = http::send(&trusted, "PUT", &format!("{base}/stranger"), &[], b"").unwrap();
    assert_eq!(code, 403, "{body}");
}

/// A primary backing up to MinIO (`pgbackrest_method: minio`, Pigsty's repository
/// with `storage_ca_file: /etc/pki/ca.crt`) and one MinIO member, rendered as built.
fn backup_inventory(net: &str, port: u16, key: &str) -> String {
    format!(
        "all:
  children:
    etcd: {{ hosts: {{ {net}.1: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}
    minio:
      hosts: {{ {net}.1: {{ minio_seq: 1 }} }}
      vars:
        minio_cluster: minio
        minio_port: {port}
        minio_admin_port: {}
        minio_data: /data/minio
        minio_server_bin: {}
    pg-t:
      hosts: {{ {net}.2: {{ pg_seq: 1, pg_role: primary }} }}
      vars:
        pg_cluster: pg-t
        pgbackrest_method: minio
        pgbackrest_repo:
          minio:
            type: s3
            s3_endpoint: sss.pigsty
            s3_region: us-east-1
            s3_bucket: pgsql
            s3_key: minioadmin
            s3_key_secret: {key}
            s3_uri_style: path
            path: /pgbackrest
            storage_port: {port}
            storage_ca_file: /etc/pki/ca.crt
  vars:
    admin_ip: {net}.1
    node_ntp_enabled: false
",
        free_port(),
        std::env::current_exe().unwrap().display()
    )
}

/// pgBackRest on the primary reaches MinIO over TLS and verifies it with the fleet
/// CA its config names: Debian's pgBackRest, the rendered `pgbackrest.conf` (paths
/// moved under the test's roots), listing the repository of a running member. It
/// connects to `sss.pigsty` (`minio_domain`, in every member's certificate), which a
/// private /etc/hosts points at the member, and checks the certificate against that
/// name, as on a node (pgBackRest matches DNS names only, not IP addresses).
/// With a foreign CA in its place it refuses the member's certificate; with a wrong
/// secret MinIO refuses it.
fn pgbackrest_verifies_minio_with_the_fleet_ca() {
    support::require_root("a private /etc/hosts for pgBackRest, in a mount namespace");
    let net = "127.0.8";
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let inv = backup_inventory(net, port, "S3User.MinIO");
    let minio = member(tmp.path(), "m1", &inv, net, 1, 1);
    let pg = TestNode::render(tmp.path(), "pg1", &inv, "pg-t-1");
    let conf = std::fs::read_to_string(pg.root.join("etc/pgbackrest/pgbackrest.conf")).unwrap();
    for line in [
        "repo1-type=s3",
        "repo1-s3-endpoint=sss.pigsty",
        "repo1-storage-ca-file=/etc/pki/ca.crt",
    ] {
        assert!(conf.lines().any(|l| l == line), "no `{line}` in:\n{conf}");
    }
    assert!(
        !conf.contains("verify-tls=n"),
        "pgBackRest verifies TLS by default: {conf}"
    );
    assert!(
        pg.root.join("etc/pki/ca.crt").is_file(),
        "the CA is in the image"
    );

    // The member: started and waited for, over https trusting the CA.
    minio.services.start("minio.service").unwrap();
    let ca = std::fs::read_to_string(pg.root.join("etc/pki/ca.crt")).unwrap();
    let t = Duration::from_secs(2);
    let https = pigsty::http::client_trusting(t, t, &ca).unwrap();
    let live = format!("https://{net}.1:{port}/minio/health/live");
    let up = (0..100).any(|_| {
        let ok = matches!(pigsty::http::get(&https, &live), Ok((200, _)));
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(up, "the member never answered: {}", minio.log("minio.log"));
    std::fs::create_dir_all(minio.root.join("data/minio/pgsql")).unwrap();

    // pgBackRest as rendered, with this test's paths.
    let run = |conf: &str, name: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join("log")).unwrap();
        let local =
            conf.replace(
                "/etc/pki/ca.crt",
                &pg.root.join("etc/pki/ca.crt").display().to_string(),
            )
            .replace(
                "log-path=/pg/log/pgbackrest",
                &format!("log-path={}/log", dir.display()),
            )
            .replace(
                "spool-path=/pg/spool",
                &format!("spool-path={}", dir.display()),
            ) + &format!("lock-path={}\n", dir.display());
        let file = dir.join("pgbackrest.conf");
        std::fs::write(&file, local).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, format!("127.0.0.1 localhost\n{net}.1 sss.pigsty\n")).unwrap();
        let out = std::process::Command::new("unshare")
            .args(["--mount", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec pgbackrest \"$@\"")
            .arg(&hosts)
            .arg(format!("--config={}", file.display()))
            .args([
                "--stanza=pg-t",
                "--log-level-console=warn",
                "--log-level-stderr=off",
            ])
            .args(["--io-timeout=5", "--db-timeout=5", "repo-ls"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running pgbackrest (ci/setup.sh installs it)");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&conf, "trusted");
    assert_eq!(
        code,
        Some(0),
        "pgbackrest repo-ls with the fleet CA: {text}\n{}",
        minio.log("minio.log")
    );

    // A foreign CA in the file the config names: the member's certificate is refused.
    let foreign = pigsty::pki::Pki::open_or_create(&tmp.path().join("foreign")).unwrap();
    let foreign_ca = tmp.path().join("foreign-ca.crt");
    std::fs::write(&foreign_ca, foreign.ca_pem()).unwrap();
    let (code, text) = run(
        &conf.replace("/etc/pki/ca.crt", &foreign_ca.display().to_string()),
        "foreign",
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("unable to verify certificate") || text.contains("certificate verify failed"),
        "{text}"
    );

    // The right CA and a wrong secret: MinIO refuses the signature.
    let wrong = backup_inventory(net, port, "Wrong.Secret");
    let pg_wrong = TestNode::render(tmp.path(), "pg1-wrong", &wrong, "pg-t-1");
    let conf_wrong =
        std::fs::read_to_string(pg_wrong.root.join("etc/pgbackrest/pgbackrest.conf")).unwrap();
    let (code, text) = run(&conf_wrong, "wrong-secret");
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("403"), "{text}");
    minio.services.stop("minio.service").unwrap();
}

/// One member of three: no write quorum; the wait stops at its bound and says why.
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

/// madmin-go's `encrypt_test.go` (`decryptDataTests`): ciphertexts made by Go's
/// `EncryptData`, of 0, 256, 32 and 256 zero bytes. The stand-in's decryptor opens
/// them, so it reads madmin's format; the agent's output must then open with it too.
const MADMIN_VECTORS: [(&str, &str, usize); 4] = [
    (
        "",
        "828aa81599df0651c0461adb82283e8b89956baee9f6e719947ef9cddc849028001dc9d3ac0938f66b07bacc9751437e1985f8a9763c240e81",
        0,
    ),
    (
        "",
        concat!(
            "1793c71df6647860437134073c15688cbb15961dc0758c7ee1225e66e79c724c00d790dba9c671eae89da2c736d858286ac9bd027abacc6443",
            "0375cd41b63b67c070c7fba475a8dd66ae65ba905176c48cbe6f734fc74df87343d8ccff54bada4aeb0a04bd021633ebe6c4768e23f5dea142",
            "561d4fe3f90ed59d13dc5fb3a585dadec1742325291b9c81692bdd3420b2428127f8195e0ecd9a1c9237712ed67af7339fbbf7ff3ee1c516e1",
            "f81e69d933e057b30997e7274a2c9698e07c39f0e8d6818858f34c8191871b5a52bea9061806bd029024bfc1d9c1f230904968d6c9e10fddcb",
            "c006ba97356ff243570fd96df07dd6894e215a6b24c4ed730369519289ebd877aff6ccbd2265985e4ab1a2b7930bab9cfb767b97348a639ddf",
            "8db81bf5151da7e8f3d9638a1b86eb1dd78cc6a526f10a414c78638f",
        ),
        256,
    ),
    (
        r#"xPl.8/rhR"Q_1xLt"#,
        concat!(
            "b5c016e93b84b473fc8a37af94936563630c36d6df1841d23a86ee51ca161f9e00ac19116b32f643ff6a56a212b265d8c56",
            "195bb0d12ce199e13dfdc5272f80c1564da2c6fc2fa18da91d8062de02af5cdafea491c6f3cae1f",
        ),
        32,
    ),
    (
        "7h5oU4$te{;K}fgqlI^]",
        concat!(
            "c58edf7cfd557b6b655de6f48b1a3049d8d049dadb3a7bfa9ac9ccbb5baf37ec00f83086a26f43b7d6bc9075ad0",
            "38bf5741f118d502ebe94165e4072ba7f98535d6b1e3b6ae67a98115d146d9b4d90e4df4ae82df9cfa17ed7cd42",
            "465181559f7ddf09c98beec521bb4478e0cb73c4e0827af8688ff4e7a07327a10d5a180035e6ddb16d974a85257",
            "981cd9e0360a20f7b4d653190267dfb241148f018ae180568042e864b9e1b5bc05425a3abc2b0324f50c72d5679",
            "8f924405dfc0f8523f4bb564ed65af8e1b1c82a7a0640552ecf81985d95d0993d99172592ddc1393dfa63e8f0b3",
            "d744b2cc4b73384ca4693f0c1aec0e9b00e85f2937e891105d67da8f59c14ca96608e0425c42f9c1e7c2a8b3413",
            "e1381784f9cfe01de7c47cea1f8d7a7d88f5d4aca783cf55332b47f957a6b9a65269d7eb606b877b",
        ),
        256,
    ),
];

fn the_decryptor_opens_madmin_test_vectors() {
    for (password, hex_data, len) in MADMIN_VECTORS {
        let data = hex::decode(hex_data).unwrap();
        let plain = minio_standin::decrypt_data(password, &data)
            .unwrap_or_else(|e| panic!("{hex_data}: {e}"));
        assert_eq!(plain, vec![0u8; len]);
        // One flipped bit anywhere is refused, the wrong password too.
        let mut bad = data.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(minio_standin::decrypt_data(password, &bad).is_err());
        assert!(minio_standin::decrypt_data("wrong", &data).is_err());
    }
}

/// The agent's `EncryptData` opens with the decryptor checked against madmin, across
/// the fragment boundaries (16 KiB).
fn agent_encryption_round_trips() {
    use pigsty::agent::minio::madmin::encrypt_data;
    for len in [0, 1, 20, 16383, 16384, 16385, 2 * 16384, 40_000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let sealed = encrypt_data("S3User.MinIO", &data).unwrap();
        assert_eq!(
            minio_standin::decrypt_data("S3User.MinIO", &sealed).as_deref(),
            Ok(&data[..]),
            "{len} bytes"
        );
        // Fragments cannot be dropped: cut the last one off.
        if len > 16384 {
            let cut = &sealed[..sealed.len() - (len - 1) % 16384 - 1 - 16];
            assert!(minio_standin::decrypt_data("S3User.MinIO", cut).is_err());
        }
    }
}

fn user_record(data: &std::path::Path, name: &str) -> serde_json::Value {
    let path = minio_standin::users_dir(data).join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// With the admin API, the agent creates the inventory's users (secret sent
/// encrypted) and points each at its policy; resumed and run again, it finds them.
fn users_and_policies_through_the_admin_api() {
    let net = "127.0.8";
    let port = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let inv = inventory(net, port, 1, "");
    let admin = [(minio_standin::ADMIN_FLAG, "1")];
    let node = member_with(tmp.path(), "n1", &inv, net, 1, 1, &admin);
    let wait = Duration::from_secs(20);

    // 1. Killed after the first user: dba is made, pgbackrest not yet.
    let mut opts = node.options(wait);
    opts.crash_at = Some("minio-user:dba".into());
    let err = node.firstboot(&opts).unwrap_err();
    assert!(format!("{err:#}").contains("minio-user:dba"), "{err:#}");
    let data = node.root.join("data/minio");
    assert_eq!(user_record(&data, "dba")["policyName"], "consoleAdmin");
    assert!(
        !minio_standin::users_dir(&data)
            .join("pgbackrest.json")
            .exists()
    );

    // 2. Resumed: dba is there already (and updated), pgbackrest is made.
    let state = node
        .firstboot(&node.options(wait))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", node.log("minio.log")));
    let detail = &state.steps["minio-buckets"].detail;
    assert!(
        detail.contains("users created [pgbackrest], already there [dba]"),
        "{detail}"
    );
    assert!(
        detail.contains("policies already there [consoleAdmin, readwrite]")
            && detail.contains("attached [dba=consoleAdmin, pgbackrest=readwrite]"),
        "{detail}"
    );
    let backup = user_record(&data, "pgbackrest");
    assert_eq!(backup["secretKey"], "S3User.Backup");
    assert_eq!(backup["status"], "enabled");
    assert_eq!(backup["policyName"], "readwrite");
    assert_eq!(user_record(&data, "dba")["secretKey"], "S3User.DBA");

    // 3. Another first boot against the same server: both there, no error.
    let again = member_with(tmp.path(), "n1-again", &inv, net, 1, 1, &admin);
    let state = again
        .firstboot(&again.options(wait))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let detail = &state.steps["minio-buckets"].detail;
    assert!(
        detail.contains("users created [], already there [dba, pgbackrest]"),
        "{detail}"
    );
    assert!(
        detail.contains("attached [dba=consoleAdmin, pgbackrest=readwrite]"),
        "{detail}"
    );
}

/// The tests' service manager (tests/support/processes.rs), which runs the stand-in
/// above and every real server of the agent tests: a unit starts once, stops, and an
/// undefined one is refused.
fn the_test_process_manager_starts_once_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let pm = Processes::new(dir.path());
    pm.define(
        "sleep.service",
        ProcessSpec {
            program: "sleep".into(),
            args: vec!["30".into()],
            log: dir.path().join("sleep.log"),
            ..ProcessSpec::default()
        },
    );
    pm.start("sleep.service").unwrap();
    let pid = pm.pid("sleep.service").unwrap();
    pm.start("sleep.service").unwrap();
    assert_eq!(pm.pid("sleep.service"), Some(pid));
    pm.stop("sleep.service").unwrap();
    assert!(!pm.is_active("sleep.service").unwrap());
    assert!(pm.start("other.service").is_err());
}
