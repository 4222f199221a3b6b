//! The admin's artifact server: the bundles and roots `build-image` made, served over
//! HTTP by their sha256 (`/sha256/<hex>`) with Range and HEAD (tower-http's
//! `ServeFile`), for `agent update` / `agent apply` to pull while a rollout runs, and
//! for PXE installs (`pigsty serve`, issue 15) after it.
//!
//! A node bundle holds the node's secrets: it is served only to the addresses it is
//! registered for (the node's own), any other peer gets 403 and the refusal is logged.
//! Every request is logged with its peer, path, status and size.

pub mod boot;
pub mod dhcp;
pub mod fleet;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// One file served by its sha256.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    /// Who may fetch it; `None`: anyone who reaches the server (what holds no secret).
    pub only: Option<Vec<IpAddr>>,
    /// The MAC (`${mac:hexhyp}`) of the machine it is installed onto: served only
    /// while that machine's install is not reported done (its install window), and
    /// only to that MAC where the kernel's neighbour table knows the asker's.
    pub machine: Option<String>,
    /// Bytes of it sent so far (all requests together).
    served: Arc<AtomicU64>,
}

/// What a server serves: sha256 (lowercase hex) → file.
#[derive(Debug, Clone, Default)]
pub struct Artifacts {
    files: BTreeMap<String, Artifact>,
}

impl Artifacts {
    /// Serve `path` as `sha256` (not checked here: the fetcher checks it).
    pub fn add(&mut self, sha256: &str, path: &Path, only: Option<Vec<IpAddr>>) {
        self.files.insert(
            sha256.to_ascii_lowercase(),
            Artifact {
                path: path.to_path_buf(),
                only,
                machine: None,
                served: Arc::new(AtomicU64::new(0)),
            },
        );
    }

    /// Serve `path` as `sha256` to the machine with address `ip` and MAC `mac` (any
    /// spelling) only, during its install window; see [`Artifact::machine`].
    pub fn add_for_machine(&mut self, sha256: &str, path: &Path, ip: IpAddr, mac: &str) {
        self.files.insert(
            sha256.to_ascii_lowercase(),
            Artifact {
                path: path.to_path_buf(),
                only: Some(vec![ip]),
                machine: boot::hexhyp(mac).or_else(|| Some(mac.to_string())),
                served: Arc::new(AtomicU64::new(0)),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub peer: IpAddr,
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// A machine the boot server knows by its MAC: the node it is, the address it boots
/// with, and its script while its disk is to be installed and once it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub node: String,
    pub ip: IpAddr,
    pub install: String,
    pub installed: String,
}

/// What a machine's installer reported (`POST /installed/<mac>`): its disk written
/// (`installed`) or holding a node's data already (`kept`). Kept across restarts of
/// the server in its state file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    pub node: String,
    pub result: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub disk: String,
    /// Seconds since the epoch.
    pub at: u64,
}

/// The boot scripts a server hands out (`pigsty serve`): by MAC (`${mac:hexhyp}`).
#[derive(Debug, Clone, Default)]
pub struct Scripts {
    pub by_mac: BTreeMap<String, Machine>,
    /// Machines whose disk is installed (or kept), by MAC: they boot from disk.
    pub done: BTreeMap<String, Installed>,
    /// Where `done` is kept (JSON), rewritten at each report.
    pub state_file: Option<PathBuf>,
}

impl Scripts {
    /// `machine` is the one with `mac` (any spelling).
    pub fn add(&mut self, mac: &str, machine: Machine) -> anyhow::Result<()> {
        let key =
            boot::hexhyp(mac).with_context(|| format!("{}: {mac:?} is not a MAC", machine.node))?;
        if let Some(other) = self.by_mac.get(&key) {
            bail!(
                "{} and {} have the same MAC {key}",
                machine.node,
                other.node
            );
        }
        self.by_mac.insert(key, machine);
        Ok(())
    }

    /// Read `done` from `path` (none yet: empty), and keep it there from now on.
    pub fn keep_state_in(&mut self, path: &Path) -> anyhow::Result<()> {
        self.done = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        self.state_file = Some(path.to_path_buf());
        Ok(())
    }

    /// Write `done` to the state file (when there is one), atomically.
    pub fn save(&self) -> anyhow::Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let mut text = serde_json::to_vec_pretty(&self.done)?;
        text.push(b'\n');
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The script for `key` (a MAC spelled as hexhyp) and the node it is for.
    fn script(&self, key: &str) -> Option<(&str, &str)> {
        self.by_mac.get(key).map(|m| {
            let s = if self.done.contains_key(key) {
                &m.installed
            } else {
                &m.install
            };
            (m.node.as_str(), s.as_str())
        })
    }
}

#[derive(Clone)]
struct Shared {
    artifacts: Arc<Artifacts>,
    scripts: Option<Arc<Mutex<Scripts>>>,
    log: Arc<Mutex<Vec<Logged>>>,
}

/// A running server; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    artifacts: Arc<Artifacts>,
    scripts: Option<Arc<Mutex<Scripts>>>,
    log: Arc<Mutex<Vec<Logged>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listen on `listen` (port 0: any free port) and serve `artifacts` from a thread
    /// of its own.
    pub fn start(listen: SocketAddr, artifacts: Artifacts) -> anyhow::Result<Server> {
        Server::start_with(listen, artifacts, None)
    }

    /// [`Server::start`], also answering iPXE: `/boot.ipxe`, then `/ipxe/<mac>` with
    /// the machine's script from `scripts` (or the unknown machine's).
    pub fn start_with(
        listen: SocketAddr,
        artifacts: Artifacts,
        scripts: Option<Scripts>,
    ) -> anyhow::Result<Server> {
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("listening on {listen} for the artifact server"))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let artifacts = Arc::new(artifacts);
        let scripts = scripts.map(|s| Arc::new(Mutex::new(s)));
        let shared = Shared {
            artifacts: artifacts.clone(),
            scripts: scripts.clone(),
            log: log.clone(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
        let thread = std::thread::Builder::new()
            .name("artifact-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let app = axum::Router::new()
                        .route("/sha256/{hex}", axum::routing::get(artifact))
                        .route("/sha256/{hex}/{name}", axum::routing::get(artifact_named))
                        .route("/boot.ipxe", axum::routing::get(generic))
                        .route("/ipxe/{mac}", axum::routing::get(by_mac))
                        .route("/installed/{mac}", axum::routing::post(installed))
                        .fallback(not_found)
                        .with_state(shared);
                    let served = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
                    if let Err(e) = served {
                        tracing::warn!("the artifact server stopped: {e}");
                    }
                });
            })
            .context("starting the artifact server's thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context("starting the artifact server")),
            Err(_) => bail!("the artifact server's thread ended before it listened"),
        }
        tracing::info!("artifact server on http://{addr}");
        Ok(Server {
            addr,
            artifacts,
            scripts,
            log,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a node fetches `sha256` by, the server reached at `host`.
    pub fn url(&self, host: IpAddr, sha256: &str) -> String {
        let host = match host {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        format!(
            "http://{host}:{}/sha256/{}",
            self.addr.port(),
            sha256.to_ascii_lowercase()
        )
    }

    /// Bytes of `sha256` sent so far, and its size.
    pub fn served(&self, sha256: &str) -> (u64, u64) {
        match self.artifacts.files.get(&sha256.to_ascii_lowercase()) {
            Some(a) => (
                a.served.load(Ordering::Relaxed),
                std::fs::metadata(&a.path).map_or(0, |m| m.len()),
            ),
            None => (0, 0),
        }
    }

    /// Hand out `scripts` from now on (their URLs need the port the server got).
    pub fn set_scripts(&self, scripts: Scripts) {
        if let Some(s) = &self.scripts
            && let Ok(mut s) = s.lock()
        {
            *s = scripts;
        }
    }

    /// The machines whose installers reported their disk installed or kept.
    pub fn installed(&self) -> BTreeMap<String, Installed> {
        self.scripts
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.done.clone()))
            .unwrap_or_default()
    }

    /// The requests answered so far.
    pub fn log(&self) -> Vec<Logged> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn record(shared: &Shared, peer: IpAddr, method: &str, path: &str, status: StatusCode) {
    tracing::info!("{peer} {method} {path} → {}", status.as_u16());
    if let Ok(mut log) = shared.log.lock() {
        log.push(Logged {
            peer,
            method: method.to_string(),
            path: path.to_string(),
            status: status.as_u16(),
        });
    }
}

async fn artifact(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(hex): UrlPath<String>,
    req: Request,
) -> Response {
    serve_artifact(shared, peer, hex, req).await
}

/// `/sha256/<hex>/<name>`: the same artifact, under a file name for fetchers that
/// go by its extension (live-boot's `fetch=` mounts only `*.squashfs`, `*.iso`...).
async fn artifact_named(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((hex, _name)): UrlPath<(String, String)>,
    req: Request,
) -> Response {
    serve_artifact(shared, peer, hex, req).await
}

async fn serve_artifact(shared: Shared, peer: SocketAddr, hex: String, req: Request) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let peer = canonical(peer.ip());
    let found = shared
        .artifacts
        .files
        .get(&hex.to_ascii_lowercase())
        .cloned();
    let Some(found) = found else {
        record(&shared, peer, &method, &path, StatusCode::NOT_FOUND);
        return (StatusCode::NOT_FOUND, "no such artifact\n").into_response();
    };
    if let Some(only) = &found.only
        && !only.iter().any(|ip| canonical(*ip) == peer)
    {
        record(&shared, peer, &method, &path, StatusCode::FORBIDDEN);
        return (
            StatusCode::FORBIDDEN,
            "this artifact is served only to the node it is for\n",
        )
            .into_response();
    }
    if let Some(mac) = &found.machine {
        let closed = shared
            .scripts
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.done.contains_key(mac)))
            .unwrap_or(false);
        if closed {
            tracing::warn!("{peer}: {path} asked for after {mac}'s install was reported");
            record(&shared, peer, &method, &path, StatusCode::FORBIDDEN);
            return (
                StatusCode::FORBIDDEN,
                "this machine's install is reported done: its install window is closed \
                 (`pigsty serve --reinstall NODE` opens it again)\n",
            )
                .into_response();
        }
        if let Some(seen) = neighbour_mac(peer)
            && &seen != mac
        {
            tracing::warn!("{peer}: {path} asked for from MAC {seen}, not the node's {mac}");
            record(&shared, peer, &method, &path, StatusCode::FORBIDDEN);
            return (
                StatusCode::FORBIDDEN,
                "this artifact is served only to the node's own MAC and address\n",
            )
                .into_response();
        }
    }
    match tower_http::services::ServeFile::new(&found.path)
        .oneshot(req)
        .await
    {
        Ok(resp) => {
            record(&shared, peer, &method, &path, resp.status());
            let served = found.served.clone();
            resp.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        served.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                }))
            })
            .into_response()
        }
        Err(e) => {
            record(
                &shared,
                peer,
                &method,
                &path,
                StatusCode::INTERNAL_SERVER_ERROR,
            );
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

async fn generic(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if shared.scripts.is_none() {
        record(
            &shared,
            canonical(peer.ip()),
            "GET",
            "/boot.ipxe",
            StatusCode::NOT_FOUND,
        );
        return (StatusCode::NOT_FOUND, "not a boot server\n").into_response();
    }
    record(
        &shared,
        canonical(peer.ip()),
        "GET",
        "/boot.ipxe",
        StatusCode::OK,
    );
    boot::GENERIC.into_response()
}

async fn by_mac(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(mac): UrlPath<String>,
) -> Response {
    let peer = canonical(peer.ip());
    let path = format!("/ipxe/{mac}");
    let (Some(scripts), Some(key)) = (&shared.scripts, boot::hexhyp(&mac)) else {
        record(&shared, peer, "GET", &path, StatusCode::NOT_FOUND);
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let found = scripts
        .lock()
        .ok()
        .and_then(|s| s.script(&key).map(|(n, t)| (n.to_string(), t.to_string())));
    match found {
        Some((node, script)) => {
            tracing::info!("{peer}: {node} ({key}) asks for its boot script");
            record(&shared, peer, "GET", &path, StatusCode::OK);
            script.into_response()
        }
        None => {
            tracing::warn!("{peer}: unknown machine {key} asks for a boot script");
            record(&shared, peer, "GET", &path, StatusCode::OK);
            boot::unknown(&key).into_response()
        }
    }
}

/// An installer's report: from the machine's own address only. `installed` and
/// `kept` make the machine boot from its disk from now on; anything else is logged.
async fn installed(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(mac): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response {
    let peer = canonical(peer.ip());
    let path = format!("/installed/{mac}");
    let answer = |status: StatusCode, text: String| {
        record(&shared, peer, "POST", &path, status);
        (status, text).into_response()
    };
    let (Some(scripts), Some(key)) = (&shared.scripts, boot::hexhyp(&mac)) else {
        return answer(StatusCode::NOT_FOUND, "not found\n".into());
    };
    let Ok(mut scripts) = scripts.lock() else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "state lost\n".into());
    };
    let Some(machine) = scripts.by_mac.get(&key).cloned() else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("{key} is not in the inventory\n"),
        );
    };
    if canonical(machine.ip) != peer {
        tracing::warn!(
            "{peer}: a report for {} ({key}) from another address than its {}",
            machine.node,
            machine.ip
        );
        return answer(
            StatusCode::FORBIDDEN,
            "a machine reports only for itself\n".into(),
        );
    }
    let report: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return answer(StatusCode::BAD_REQUEST, format!("not JSON: {e}\n")),
    };
    let field = |k: &str| {
        report
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let result = field("result");
    if result != "installed" && result != "kept" {
        tracing::warn!(
            "{}: its install did not finish ({result}): {}",
            machine.node,
            field("detail")
        );
        return answer(StatusCode::OK, "noted\n".into());
    }
    tracing::info!(
        "{}: disk {result} ({}, sha256 {}); it boots from its disk from now on",
        machine.node,
        field("disk"),
        field("sha256")
    );
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    scripts.done.insert(
        key,
        Installed {
            node: machine.node.clone(),
            result,
            sha256: field("sha256"),
            disk: field("disk"),
            at,
        },
    );
    if let Err(e) = scripts.save() {
        tracing::warn!("keeping the install state: {e:#}");
    }
    answer(StatusCode::OK, "ok\n".into())
}

async fn not_found(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    tracing::info!("{} {} {} → 404", peer.ip(), req.method(), req.uri().path());
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// An IPv4 peer seen through a dual-stack socket as `::ffff:a.b.c.d` is `a.b.c.d`.
/// The MAC (`${mac:hexhyp}`) the kernel's neighbour table holds for `peer`, an
/// IPv4 address on a network of this machine's (`/proc/thread-self/net/arp`: the
/// calling thread's network namespace). None for a peer reached through a router,
/// whose frames carry the router's MAC.
fn neighbour_mac(peer: IpAddr) -> Option<String> {
    let IpAddr::V4(v4) = peer else {
        return None;
    };
    let table = std::fs::read_to_string("/proc/thread-self/net/arp").ok()?;
    neighbour_in(&table, v4)
}

/// [`neighbour_mac`] from the text of `/proc/net/arp`: a complete entry (flag 0x2).
fn neighbour_in(table: &str, peer: std::net::Ipv4Addr) -> Option<String> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (ip, flags, mac) = (f.first()?, f.get(2)?, f.get(3)?);
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()? & 0x2 != 0;
        (ip.parse() == Ok(peer) && complete && *mac != "00:00:00:00:00:00")
            .then(|| boot::hexhyp(mac))
            .flatten()
    })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address of this machine that reaches `peer` (the route's source address),
/// found without sending a packet (a UDP socket's connect only picks the route).
pub fn source_address_towards(peer: IpAddr) -> anyhow::Result<IpAddr> {
    let bind: SocketAddr = match peer {
        IpAddr::V4(_) => "0.0.0.0:0".parse()?,
        IpAddr::V6(_) => "[::]:0".parse()?,
    };
    let sock = std::net::UdpSocket::bind(bind).context("a UDP socket to find the route")?;
    sock.connect(SocketAddr::new(peer, 9))
        .with_context(|| format!("no route to {peer}"))?;
    Ok(sock.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_neighbour_table_names_an_on_link_peers_mac() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device
10.10.10.13      0x1         0x2         52:54:00:0A:0A:0D     *        br0
10.10.10.12      0x1         0x0         00:00:00:00:00:00     *        br0
10.10.10.14      0x1         0x2         00:00:00:00:00:00     *        br0
";
        let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
        assert_eq!(
            neighbour_in(table, ip("10.10.10.13")).as_deref(),
            Some("52-54-00-0a-0a-0d")
        );
        // Incomplete (still resolving) or empty: not known, so not refused by MAC.
        assert_eq!(neighbour_in(table, ip("10.10.10.12")), None);
        assert_eq!(neighbour_in(table, ip("10.10.10.14")), None);
        // Reached through a router: no entry of its own.
        assert_eq!(neighbour_in(table, ip("192.0.2.7")), None);
    }

    fn server_with(only: Option<Vec<IpAddr>>) -> (Server, tempfile::TempDir, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("bundle.tar");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let mut a = Artifacts::default();
        a.add("AB12", &path, only);
        let s = Server::start("127.0.0.1:0".parse().unwrap(), a).unwrap();
        (s, dir, data)
    }

    fn client() -> crate::http::Client {
        crate::http::client(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(10),
        )
        .unwrap()
    }

    #[test]
    fn an_artifact_is_served_whole_and_by_range_and_others_are_404() {
        let (s, _dir, data) = server_with(None);
        let url = s.url("127.0.0.1".parse().unwrap(), "ab12");
        let http = client();
        let whole = http.get(&url).send().unwrap();
        assert_eq!(whole.status().as_u16(), 200);
        assert_eq!(whole.bytes().unwrap().as_ref(), &data[..]);
        let part = http
            .get(&url)
            .header("Range", "bytes=1000-1999")
            .send()
            .unwrap();
        assert_eq!(part.status().as_u16(), 206);
        assert_eq!(part.bytes().unwrap().as_ref(), &data[1000..2000]);
        let named = http.get(format!("{url}/root.squashfs")).send().unwrap();
        assert_eq!(named.status().as_u16(), 200);
        assert_eq!(named.bytes().unwrap().as_ref(), &data[..]);
        let head = http.head(&url).send().unwrap();
        assert_eq!(head.status().as_u16(), 200);
        // (reqwest's content_length() is the body's, empty for HEAD: the header says it)
        assert_eq!(
            head.headers()["content-length"].to_str().unwrap(),
            data.len().to_string()
        );
        let missing = http
            .get(s.url("127.0.0.1".parse().unwrap(), "cd34"))
            .send()
            .unwrap();
        assert_eq!(missing.status().as_u16(), 404);
        let log = s.log();
        assert_eq!(
            log.iter().map(|l| l.status).collect::<Vec<_>>(),
            [200, 206, 200, 200, 404]
        );
        assert!(log.iter().all(|l| l.peer.to_string() == "127.0.0.1"));
        // What was sent: the whole file once, then the range (a HEAD sends nothing).
        assert_eq!(
            s.served("AB12"),
            (2 * data.len() as u64 + 1000, data.len() as u64)
        );
    }

    #[test]
    fn a_bundle_is_refused_to_any_other_address() {
        let (s, _dir, _) = server_with(Some(vec!["10.10.10.11".parse().unwrap()]));
        let url = s.url("127.0.0.1".parse().unwrap(), "ab12");
        let resp = client().get(&url).send().unwrap();
        assert_eq!(resp.status().as_u16(), 403);
        assert_eq!(s.log()[0].status, 403);
    }

    #[test]
    fn machines_get_their_script_by_mac_and_strangers_the_unknown_one() {
        let machine = |node: &str, ip: &str| Machine {
            node: node.into(),
            ip: ip.parse().unwrap(),
            install: format!("#!ipxe\n# {node}: install\n"),
            installed: format!("#!ipxe\n# {node}: from disk\n"),
        };
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let mut scripts = Scripts::default();
        scripts.keep_state_in(&state).unwrap();
        scripts
            .add("52:54:00:0a:0a:0b", machine("pg-lab-1", "127.0.0.1"))
            .unwrap();
        scripts
            .add("52:54:00:0a:0a:0c", machine("pg-lab-2", "10.10.10.12"))
            .unwrap();
        let dup = scripts
            .add("52-54-00-0A-0A-0B", machine("pg-lab-3", "127.0.0.1"))
            .unwrap_err();
        assert!(format!("{dup:#}").contains("pg-lab-3 and pg-lab-1 have the same MAC"));
        let s = Server::start_with(
            "127.0.0.1:0".parse().unwrap(),
            Artifacts::default(),
            Some(scripts),
        )
        .unwrap();
        let base = format!("http://{}", s.addr());
        let get = |p: &str| {
            let r = client().get(format!("{base}{p}")).send().unwrap();
            (r.status().as_u16(), r.text().unwrap())
        };
        let (code, text) = get("/boot.ipxe");
        assert_eq!((code, text.as_str()), (200, boot::GENERIC));
        assert_eq!(
            get("/ipxe/52-54-00-0a-0a-0b"),
            (200, "#!ipxe\n# pg-lab-1: install\n".into())
        );
        let post = |p: &str, body: &str| {
            client()
                .post(format!("{base}{p}"))
                .body(body.to_string())
                .send()
                .unwrap()
                .status()
                .as_u16()
        };
        // A report for another machine than the peer's address is refused.
        assert_eq!(
            post("/installed/52-54-00-0a-0a-0c", r#"{"result":"installed"}"#),
            403
        );
        // A failed install is noted, and the machine is still to be installed.
        assert_eq!(
            post("/installed/52-54-00-0a-0a-0b", r#"{"result":"failed"}"#),
            200
        );
        assert!(get("/ipxe/52-54-00-0a-0a-0b").1.contains("install"));
        assert_eq!(post("/installed/52-54-00-0a-0a-0b", "not json"), 400);
        assert_eq!(
            post(
                "/installed/52-54-00-0a-0a-0b",
                r#"{"result":"installed","disk":"/dev/vda","sha256":"ab"}"#
            ),
            200
        );
        assert_eq!(
            get("/ipxe/52-54-00-0a-0a-0b"),
            (200, "#!ipxe\n# pg-lab-1: from disk\n".into())
        );
        let kept: BTreeMap<String, Installed> =
            serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(kept["52-54-00-0a-0a-0b"].node, "pg-lab-1");
        assert_eq!(kept["52-54-00-0a-0a-0b"].disk, "/dev/vda");
        assert_eq!(s.installed(), kept);
        let mut again = Scripts::default();
        again.keep_state_in(&state).unwrap();
        assert_eq!(again.done, kept, "the state outlives the server");
        let (code, text) = get("/ipxe/52-54-00-0a-0a-99");
        assert_eq!(code, 200);
        assert!(text.contains("not in the inventory"), "{text}");
        assert_eq!(get("/ipxe/not-a-mac").0, 404);
        // Without scripts, no boot server.
        let plain = Server::start("127.0.0.1:0".parse().unwrap(), Artifacts::default()).unwrap();
        let r = client()
            .get(format!("http://{}/boot.ipxe", plain.addr()))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
    }

    #[test]
    fn the_source_address_towards_loopback_is_loopback() {
        let ip = source_address_towards("127.0.0.1".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }
}
