//! The admin's artifact server: the bundles and roots `build-image` made, served over
//! HTTP by their sha256 (`/sha256/<hex>`) with Range and HEAD (tower-http's
//! `ServeFile`), for `agent update` / `agent apply` to pull while a rollout runs, and
//! for PXE installs (`pigsty serve`, issue 15) after it.
//!
//! A node bundle holds the node's secrets: it is served only to the addresses it is
//! registered for (the node's own), any other peer gets 403 and the refusal is logged.
//! Every request is logged with its peer, path, status and size.

pub mod boot;

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

/// The boot scripts a server hands out (`pigsty serve`): by MAC (`${mac:hexhyp}`),
/// each with the node it is for.
#[derive(Debug, Clone, Default)]
pub struct Scripts {
    pub by_mac: BTreeMap<String, (String, String)>,
}

impl Scripts {
    /// `script` for the machine with `mac` (any spelling), which is `node`.
    pub fn add(&mut self, mac: &str, node: &str, script: String) -> anyhow::Result<()> {
        let key = boot::hexhyp(mac).with_context(|| format!("{node}: {mac:?} is not a MAC"))?;
        if let Some((other, _)) = self.by_mac.get(&key) {
            bail!("{node} and {other} have the same MAC {key}");
        }
        self.by_mac.insert(key, (node.to_string(), script));
        Ok(())
    }
}

#[derive(Clone)]
struct Shared {
    artifacts: Arc<Artifacts>,
    scripts: Option<Arc<Scripts>>,
    log: Arc<Mutex<Vec<Logged>>>,
}

/// A running server; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    artifacts: Arc<Artifacts>,
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
        let shared = Shared {
            artifacts: artifacts.clone(),
            scripts: scripts.map(Arc::new),
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
                        .route("/boot.ipxe", axum::routing::get(generic))
                        .route("/ipxe/{mac}", axum::routing::get(by_mac))
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
    match scripts.by_mac.get(&key) {
        Some((node, script)) => {
            tracing::info!("{peer}: {node} ({key}) asks for its boot script");
            record(&shared, peer, "GET", &path, StatusCode::OK);
            script.clone().into_response()
        }
        None => {
            tracing::warn!("{peer}: unknown machine {key} asks for a boot script");
            record(&shared, peer, "GET", &path, StatusCode::OK);
            boot::unknown(&key).into_response()
        }
    }
}

async fn not_found(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request) -> Response {
    tracing::info!("{} {} {} → 404", peer.ip(), req.method(), req.uri().path());
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// An IPv4 peer seen through a dual-stack socket as `::ffff:a.b.c.d` is `a.b.c.d`.
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
            [200, 206, 200, 404]
        );
        assert!(log.iter().all(|l| l.peer.to_string() == "127.0.0.1"));
        // What was sent: the whole file once, then the range (a HEAD sends nothing).
        assert_eq!(
            s.served("AB12"),
            (data.len() as u64 + 1000, data.len() as u64)
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
        let mut scripts = Scripts::default();
        scripts
            .add(
                "52:54:00:0a:0a:0b",
                "pg-lab-1",
                "#!ipxe\n# pg-lab-1\n".into(),
            )
            .unwrap();
        let dup = scripts
            .add("52-54-00-0A-0A-0B", "pg-lab-2", String::new())
            .unwrap_err();
        assert!(format!("{dup:#}").contains("pg-lab-2 and pg-lab-1 have the same MAC"));
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
            (200, "#!ipxe\n# pg-lab-1\n".into())
        );
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
