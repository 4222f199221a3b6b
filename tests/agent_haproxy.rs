//! `pigsty agent haproxy-check` against a real HAProxy (Debian's) on loopback: two
//! servers whose health checks ask two small HTTP answerers of this test (standing in
//! for Patroni's `/primary`), checked by HAProxy only once a minute. The command runs
//! every check at once and sets each server's health through the admin socket, and
//! HAProxy routes by it at once: the primary moves without waiting for HAProxy's
//! own `rise` checks. With `--until-primary` it first waits for the named server to
//! answer its `/primary` check (a switchover followed from before it starts).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// An HTTP answerer on loopback: 200 to every request while `up`, else 503.
fn answerer(up: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let status = if up.load(Ordering::SeqCst) {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = c.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `show servers state svc`: server name → operational state (2: running, 0: stopped).
fn states(socket: &Path) -> Vec<(String, u32)> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(b"show servers state svc\n").unwrap();
    BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1) // the format version line
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(3)?.to_string(), f.get(5)?.parse().ok()?))
        })
        .collect()
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check(cfg: &Path, socket: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["agent", "haproxy-check", "--json", "--config"])
        .arg(cfg)
        .arg("--socket")
        .arg(socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "starts HAProxy (Debian's haproxy package; run with --include-ignored)"]
fn a_check_now_moves_the_primary_at_once() {
    support::require_tools(&["/usr/sbin/haproxy"]);
    let dir = tempfile::tempdir().unwrap();
    let (a_up, b_up) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(false)),
    );
    let (a, b) = (answerer(a_up.clone()), answerer(b_up.clone()));
    let socket = dir.path().join("admin.sock");
    let cfg = dir.path().join("haproxy.cfg");
    // Checks once a minute and three to rise: on its own, HAProxy would take minutes.
    std::fs::write(
        &cfg,
        format!(
            "global
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    timeout check 3s
listen svc
    bind 127.0.0.1:{port}
    option httpchk
    http-check send meth OPTIONS uri /primary
    http-check expect status 200
    default-server inter 60s fastinter 60s downinter 60s rise 3 fall 3
    server pg-1 127.0.0.1:{a} check port {a} weight 100
    server pg-2 127.0.0.1:{b} check port {b} weight 100
",
            sock = socket.display(),
            port = free_port(),
        ),
    )
    .unwrap();
    let _haproxy = Haproxy(
        Command::new("/usr/sbin/haproxy")
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "HAProxy made no admin socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // pg-1 answers 200, pg-2 503: set at once.
    let set = check(&cfg, &socket);
    let health = |set: &serde_json::Value, server: &str| {
        set.as_array()
            .unwrap()
            .iter()
            .find(|s| s["server"] == server)
            .map(|s| s["health"].as_str().unwrap().to_string())
    };
    assert_eq!(health(&set, "pg-1").as_deref(), Some("up"), "{set}");
    assert_eq!(health(&set, "pg-2").as_deref(), Some("down"), "{set}");
    let st = states(&socket);
    assert!(st.contains(&("pg-1".into(), 2)), "{st:?}");
    assert!(st.contains(&("pg-2".into(), 0)), "{st:?}");
    // The primary moves (a switchover): the next check moves HAProxy with it, at once.
    a_up.store(false, Ordering::SeqCst);
    b_up.store(true, Ordering::SeqCst);
    let set = check(&cfg, &socket);
    assert_eq!(health(&set, "pg-1").as_deref(), Some("down"), "{set}");
    assert_eq!(health(&set, "pg-2").as_deref(), Some("up"), "{set}");
    let st = states(&socket);
    assert!(st.contains(&("pg-1".into(), 0)), "{st:?}");
    assert!(st.contains(&("pg-2".into(), 2)), "{st:?}");
    // A switchover back to pg-1, followed from before it (what a rollout starts on
    // every member): the command waits while pg-1 answers 503, and sets both servers
    // as soon as it answers 200.
    let follower = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["agent", "haproxy-check", "--json", "--config"])
        .arg(&cfg)
        .arg("--socket")
        .arg(&socket)
        .args(["--until-primary", "pg-1", "--within", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let st = states(&socket);
    assert!(
        st.contains(&("pg-2".into(), 2)),
        "set before pg-1 led: {st:?}"
    );
    a_up.store(true, Ordering::SeqCst);
    b_up.store(false, Ordering::SeqCst);
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let set: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health(&set, "pg-1").as_deref(), Some("up"), "{set}");
    assert_eq!(health(&set, "pg-2").as_deref(), Some("down"), "{set}");
    let st = states(&socket);
    assert!(st.contains(&("pg-1".into(), 2)), "{st:?}");
    assert!(st.contains(&("pg-2".into(), 0)), "{st:?}");
    // A configuration that is not there is a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args([
            "agent",
            "haproxy-check",
            "--config",
            "/nonexistent/haproxy.cfg",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/haproxy.cfg"));
}
