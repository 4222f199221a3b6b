//! `pigsty agent haproxy-check`: run every health check of this node's HAProxy now
//! and set each server's health from its answer at once, through HAProxy's admin
//! socket, instead of waiting for `rise` checks `inter` apart.
//!
//! A planned switchover is the one moment the fleet knows its primary moved: `pigsty
//! rollout` runs this on every member of the cluster right after Patroni's new leader
//! runs, so the primary service follows it within a second rather than after up to
//! `downinter + (rise - 1) * fastinter` (Pigsty's `norm`: 7 s). HAProxy's own checks
//! go on as before; they agree with what was set, as they ask the same question.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// One checked server of one `listen` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub service: String,
    pub server: String,
    /// The URL its check asks (`http(s)://<server ip>:<check port><uri>`).
    pub url: String,
    /// The CA its check trusts (`check-ssl ca-file`), when it is TLS.
    pub ca_file: Option<String>,
}

/// The servers with an HTTP health check in HAProxy's configuration text, as
/// pigsty renders it: `option httpchk`, `http-check send meth M uri U`, and
/// `server NAME IP:PORT [check-ssl ca-file F] check port P ...`.
pub fn checked_servers(cfg: &str) -> Vec<Checked> {
    let mut out = Vec::new();
    let mut service: Option<String> = None;
    let mut uri: Option<String> = None;
    for line in cfg.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            [first, ..] if first.starts_with('#') => {}
            [
                "listen" | "backend" | "frontend" | "defaults" | "global" | "userlist",
                rest @ ..,
            ] => {
                service = match (words[0], rest.first()) {
                    ("listen" | "backend", Some(name)) => Some((*name).to_string()),
                    _ => None,
                };
                uri = None;
            }
            ["http-check", "send", rest @ ..] => {
                uri = rest
                    .windows(2)
                    .find(|w| w[0] == "uri")
                    .map(|w| w[1].to_string());
            }
            ["server", name, address, opts @ ..] => {
                let (Some(service), Some(uri)) = (&service, &uri) else {
                    continue;
                };
                let Some(port) = opts
                    .windows(2)
                    .find(|w| w[0] == "port")
                    .map(|w| w[1].to_string())
                else {
                    continue;
                };
                if !opts.contains(&"check") {
                    continue;
                }
                let host = address.rsplit_once(':').map_or(*address, |(h, _)| h);
                let tls = opts.contains(&"check-ssl");
                let ca_file = opts
                    .windows(2)
                    .find(|w| w[0] == "ca-file")
                    .map(|w| w[1].to_string());
                out.push(Checked {
                    service: service.clone(),
                    server: (*name).to_string(),
                    url: format!(
                        "{}://{host}:{port}{uri}",
                        if tls { "https" } else { "http" }
                    ),
                    ca_file: if tls { ca_file } else { None },
                });
            }
            _ => {}
        }
    }
    out
}

/// What one check found and what was set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Set {
    pub service: String,
    pub server: String,
    /// `up` or `down`.
    pub health: String,
    /// The check's answer: its status code, or why there was none.
    pub answer: String,
}

/// Check every server of `cfg` now (each bounded by `timeout`) and set its health
/// through the admin socket `socket`.
pub fn check_now(cfg: &Path, socket: &Path, timeout: Duration) -> anyhow::Result<Vec<Set>> {
    let text =
        std::fs::read_to_string(cfg).with_context(|| format!("reading {}", cfg.display()))?;
    let servers = checked_servers(&text);
    // One client per CA file (rustls clients are built once, used for all).
    let mut clients: std::collections::BTreeMap<Option<String>, crate::http::Client> =
        Default::default();
    for s in &servers {
        if !clients.contains_key(&s.ca_file) {
            clients.insert(s.ca_file.clone(), checker(s, timeout)?);
        }
    }
    // The checks at once: each is one request to a peer's Patroni.
    let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = servers
            .iter()
            .map(|s| {
                let client = &clients[&s.ca_file];
                scope.spawn(move || match crate::http::get(client, &s.url) {
                    Ok((code, _)) => (code, code.to_string()),
                    Err(e) => (0, crate::http::brief(&format!("{e:#}"))),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, "the check panicked".into())))
            .collect()
    });
    let mut done = Vec::new();
    for (s, (code, answer)) in servers.iter().zip(answers) {
        let health = if code == 200 { "up" } else { "down" };
        admin(
            socket,
            &format!("set server {}/{} health {health}", s.service, s.server),
        )?;
        done.push(Set {
            service: s.service.clone(),
            server: s.server.clone(),
            health: health.into(),
            answer,
        });
    }
    Ok(done)
}

/// The HTTP client of a check: trusting the check's CA file when it is over TLS.
fn checker(s: &Checked, timeout: Duration) -> anyhow::Result<crate::http::Client> {
    match &s.ca_file {
        None => crate::http::client(timeout, timeout),
        Some(f) => {
            let ca = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
            crate::http::client_trusting(timeout, timeout, &ca)
        }
    }
}

/// Wait until `server` answers 200 to its `/primary` check in `cfg` (asked every
/// half second, each bounded by `timeout`), for at most `within`; returns how long
/// it took. A rollout starts this on every member just before a switchover to
/// `server`, then [`check_now`]: each HAProxy routes to the new primary as soon as
/// its Patroni says it leads, where its own checks (`inter`, `rise`) take seconds
/// more and a check started from the admin machine afterwards waits for an SSH
/// login first.
pub fn wait_primary(
    cfg: &Path,
    server: &str,
    timeout: Duration,
    within: Duration,
) -> anyhow::Result<Duration> {
    let text =
        std::fs::read_to_string(cfg).with_context(|| format!("reading {}", cfg.display()))?;
    let checks = checked_servers(&text);
    let check = checks
        .iter()
        .find(|s| s.server == server && s.url.ends_with("/primary"))
        .with_context(|| format!("{} checks no server {server} on /primary", cfg.display()))?;
    let client = checker(check, timeout)?;
    let start = Instant::now();
    let mut last = String::from("not asked");
    let pause = Duration::from_millis(500);
    // Bounded in time and in count (a check that fails at once still waits `pause`).
    for _ in 0..=within.as_millis() / pause.as_millis() {
        match crate::http::get(&client, &check.url) {
            Ok((200, _)) => return Ok(start.elapsed()),
            Ok((code, _)) => last = format!("HTTP {code}"),
            Err(e) => last = crate::http::brief(&format!("{e:#}")),
        }
        if start.elapsed() >= within {
            break;
        }
        std::thread::sleep(pause);
    }
    bail!(
        "{server} did not answer {} with 200 within {} s (last: {last})",
        check.url,
        within.as_secs()
    )
}

/// One command on HAProxy's admin socket; anything it answers is an error (a `set`
/// that worked answers nothing).
fn admin(socket: &Path, command: &str) -> anyhow::Result<()> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to HAProxy's admin socket {}", socket.display()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .with_context(|| format!("writing to {}", socket.display()))?;
    let mut answer = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.with_context(|| format!("reading {}", socket.display()))?;
        answer.push_str(line.trim());
    }
    if !answer.is_empty() {
        bail!("HAProxy answered `{command}` with: {answer}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_are_read_from_the_rendered_configuration() {
        let cfg = "\
global
    stats socket /run/haproxy/admin.sock mode 660 level admin
listen stats
    bind *:9101
# service pg-lab-primary: 3 server(s)
listen pg-lab-primary
    bind *:5433
    option httpchk
    http-check send meth OPTIONS uri /primary
    default-server inter 6s fastinter 6s downinter 6s rise 3 fall 3
    server pg-lab-1 10.10.10.11:6432 check-ssl ca-file /etc/pki/ca.crt check port 8008 weight 100
    server pg-lab-2 10.10.10.12:6432 check port 8008 weight 100 backup
listen node-web
    bind *:80
    server web-1 10.10.10.11:8080
";
        let got = checked_servers(cfg);
        assert_eq!(
            got,
            vec![
                Checked {
                    service: "pg-lab-primary".into(),
                    server: "pg-lab-1".into(),
                    url: "https://10.10.10.11:8008/primary".into(),
                    ca_file: Some("/etc/pki/ca.crt".into()),
                },
                Checked {
                    service: "pg-lab-primary".into(),
                    server: "pg-lab-2".into(),
                    url: "http://10.10.10.12:8008/primary".into(),
                    ca_file: None,
                },
            ]
        );
    }

    /// A Patroni stand-in on loopback: answers `codes` in turn (the last one from then
    /// on) and counts the requests.
    fn patroni_answering(codes: Vec<u16>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = asked.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(50) {
                let Ok(mut stream) = stream else { continue };
                let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf);
                let code = codes[n.min(codes.len() - 1)];
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (port, asked)
    }

    fn config_checking(port: u16) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(
            f,
            "listen pg-t-primary
    bind *:5433
    http-check send meth OPTIONS uri /primary
    server pg-t-2 127.0.0.1:6432 check port {port} weight 100
listen pg-t-replica
    bind *:5434
    http-check send meth OPTIONS uri /read-only
    server pg-t-1 127.0.0.1:6432 check port {port} weight 100
"
        )
        .unwrap();
        f
    }

    #[test]
    fn a_switchover_follower_waits_for_the_new_primary_to_answer() {
        // Demoting, promoting, then leading.
        let (port, asked) = patroni_answering(vec![503, 503, 200]);
        let cfg = config_checking(port);
        let second = Duration::from_secs(1);
        wait_primary(cfg.path(), "pg-t-2", second, Duration::from_secs(30)).unwrap();
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 3);

        // Never leading: bounded, and it says what it last heard.
        let (port, _) = patroni_answering(vec![503]);
        let cfg = config_checking(port);
        let err = wait_primary(cfg.path(), "pg-t-2", second, second).unwrap_err();
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        // A server checked only on /read-only is no primary to wait for.
        let err = wait_primary(cfg.path(), "pg-t-1", second, second).unwrap_err();
        assert!(
            err.to_string().contains("no server pg-t-1 on /primary"),
            "{err}"
        );
    }
}
