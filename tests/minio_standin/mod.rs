//! MinIO STAND-IN, for tests only. No MinIO-compatible server can be installed on the
//! test machines, so this small HTTP server plays one member of a MinIO cluster with
//! just what the agent relies on:
//! - configured like MinIO: `MINIO_VOLUMES` (`https://minio-{1...3}.pigsty:9000/data`),
//!   `MINIO_OPTS` (`--address :PORT`, `--certs-dir DIR`), `MINIO_ROOT_USER` /
//!   `MINIO_ROOT_PASSWORD`;
//! - TLS as MinIO: with `public.crt` and `private.key` in the certs dir it serves
//!   https only (a plain-HTTP request fails in the handshake), and reaches https
//!   peers trusting only the certificates in `CAs/` of that dir, checking each
//!   peer's certificate against the name the volume list gives it;
//! - `GET /minio/health/live` 200; `GET /minio/health/cluster` 200 only while a write
//!   quorum of the members in the volume list answers `live` (MinIO's rule: n/2+1);
//! - `PUT /<bucket>` checked against a SigV4 signature it recomputes (403
//!   `InvalidAccessKeyId` / `SignatureDoesNotMatch`), 200 then 409 once it exists;
//!   buckets are directories under its data dir, so they survive a restart;
//! - `GET /<bucket>?list-type=2` (ListObjectsV2, signed): an empty listing of a
//!   bucket that exists (it stores no objects), 404 `NoSuchBucket` else; `HEAD` of
//!   an object 404;
//! - `PUT /<bucket>?versioning` 200; the admin API answers 501, unless started with
//!   `MINIO_STANDIN_ADMIN=1`: then it serves users and policies (see `admin`);
//! - `GET /minio/v2/metrics/cluster`: two of MinIO's cluster gauges, the members
//!   it finds live and not, so a Prometheus scrape over TLS has something to read.
//!
//! Test-only settings: `MINIO_STANDIN_IP` (the address to bind: members share a port
//! on one machine), `MINIO_STANDIN_HOSTS` (`minio-1.pigsty=127.0.6.1,...`, instead of
//! DNS), `MINIO_STANDIN_DATA` (its data dir), `MINIO_STANDIN_ROOT` (the node's root
//! directory, under which the certs dir is read). [`test_env`] sets them.
//!
//! The test binary runs it as a process: the test executable itself with
//! `MINIO_STANDIN=1` (its `main` calls [`run_if_asked`] first), through the tests'
//! service manager.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use pigsty::agent::minio::sigv4::{SignInput, authorization};
use sha2::{Digest, Sha256};

pub const ENV_FLAG: &str = "MINIO_STANDIN";
/// With `MINIO_STANDIN_ADMIN=1` the stand-in also serves the part of MinIO's admin
/// API the agent uses; without it the admin API answers 501, as RustFS would.
pub const ADMIN_FLAG: &str = "MINIO_STANDIN_ADMIN";

struct Config {
    bind: String,
    peers: Vec<Peer>,
    user: String,
    password: String,
    data: PathBuf,
    /// Set when the certs dir holds a pair: then it serves https only.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Set when the volumes are https: peers are reached trusting `CAs/` alone.
    peer_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A member of the volume list: the name its certificate must hold, and where it is.
struct Peer {
    host: String,
    addr: String,
}

/// A byte stream, plain or TLS.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The environment of a stand-in member started by a loopback test (beside
/// /etc/default/minio): serve, at `ip`, with `root` as the node's root, its data in
/// `<root>/data/minio`, and `hosts` (`minio-1.pigsty=127.0.6.1`) instead of DNS.
pub fn test_env(root: &Path, ip: &str, hosts: &[String]) -> Vec<(String, String)> {
    vec![
        (ENV_FLAG.into(), "1".into()),
        ("MINIO_STANDIN_IP".into(), ip.into()),
        ("MINIO_STANDIN_HOSTS".into(), hosts.join(",")),
        (
            "MINIO_STANDIN_DATA".into(),
            root.join("data/minio").display().to_string(),
        ),
        ("MINIO_STANDIN_ROOT".into(), root.display().to_string()),
    ]
}

/// Serve forever when the environment asks for the stand-in; else return at once.
pub fn run_if_asked() {
    if std::env::var(ENV_FLAG).as_deref() != Ok("1") {
        return;
    }
    serve();
}

/// Serve forever, configured from the environment as MinIO is (`minio server` in a
/// unit that reads /etc/default/minio).
pub fn serve() -> ! {
    let cfg = config();
    std::fs::create_dir_all(&cfg.data).expect("creating the stand-in data dir");
    let listener = TcpListener::bind(&cfg.bind).unwrap_or_else(|e| {
        eprintln!("minio stand-in: binding {}: {e}", cfg.bind);
        std::process::exit(1)
    });
    eprintln!(
        "minio stand-in listening on {} ({}) with peers {:?}",
        cfg.bind,
        if cfg.tls.is_some() { "https" } else { "http" },
        cfg.peers.iter().map(|p| &p.addr).collect::<Vec<_>>()
    );
    let cfg = std::sync::Arc::new(cfg);
    loop {
        let Ok((conn, _)) = listener.accept() else {
            continue;
        };
        let cfg = cfg.clone();
        std::thread::spawn(move || {
            let _ = handle(&cfg, conn);
        });
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

fn config() -> Config {
    let port = env("MINIO_OPTS")
        .split_whitespace()
        .skip_while(|w| *w != "--address")
        .nth(1)
        .and_then(|a| a.rsplit(':').next().map(str::to_string))
        .unwrap_or_else(|| "9000".into());
    let hosts: BTreeMap<String, String> = env("MINIO_STANDIN_HOSTS")
        .split(',')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let volumes = expand(&env("MINIO_VOLUMES"));
    let peers = volumes
        .iter()
        .filter_map(|url| {
            let hostport = url.split("://").nth(1)?.split('/').next()?.to_string();
            let (host, p) = hostport.split_once(':').unwrap_or((&hostport, "9000"));
            Some((
                format!("{}:{p}", hosts.get(host).map_or(host, String::as_str)),
                host.to_string(),
            ))
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(addr, host)| Peer { host, addr })
        .collect();
    // MinIO's default certs dir is ~/.minio/certs; `--certs-dir` names another.
    let certs = env("MINIO_OPTS")
        .split_whitespace()
        .skip_while(|w| *w != "--certs-dir")
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&env("HOME")).join(".minio/certs"));
    let certs = match env("MINIO_STANDIN_ROOT") {
        root if root.is_empty() => certs,
        root => Path::new(&root).join(certs.strip_prefix("/").unwrap_or(&certs)),
    };
    let tls = server_tls(&certs);
    let https_peers = volumes.iter().any(|v| v.starts_with("https://"));
    if https_peers && tls.is_none() {
        eprintln!(
            "minio stand-in: the volumes are https but {} holds no public.crt and private.key",
            certs.display()
        );
        std::process::exit(1)
    }
    let peer_tls = https_peers.then(|| peer_tls(&certs.join("CAs")));
    // On a node of its own (the VM lab) it binds every address and keeps its data
    // in the volume's path, as MinIO would.
    let ip = match env("MINIO_STANDIN_IP") {
        ip if ip.is_empty() => "0.0.0.0".to_string(),
        ip => ip,
    };
    let data = match env("MINIO_STANDIN_DATA") {
        d if d.is_empty() => expand(&env("MINIO_VOLUMES"))
            .first()
            .and_then(|url| url.split("://").nth(1))
            .and_then(|rest| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| "/var/lib/minio-standin".into()),
        d => d,
    };
    Config {
        bind: format!("{ip}:{port}"),
        peers,
        user: env("MINIO_ROOT_USER"),
        password: env("MINIO_ROOT_PASSWORD"),
        data: PathBuf::from(data),
        tls,
        peer_tls,
    }
}

fn crypto() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side, as MinIO's: TLS when the certs dir holds both files.
fn server_tls(dir: &Path) -> Option<Arc<rustls::ServerConfig>> {
    let (cert, key) = (dir.join("public.crt"), dir.join("private.key"));
    if !cert.exists() || !key.exists() {
        return None;
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("minio stand-in: {what}: {e}");
        std::process::exit(1)
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| fail(&cert.display().to_string(), &e));
    let key =
        PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| fail(&key.display().to_string(), &e));
    let config = rustls::ServerConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .unwrap_or_else(|e| fail("the TLS pair", &e));
    Some(Arc::new(config))
}

/// The client side towards peers: every certificate in `CAs/` is a root, nothing else.
fn peer_tls(cas: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for entry in std::fs::read_dir(cas).into_iter().flatten().flatten() {
        for cert in CertificateDer::pem_file_iter(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = roots.add(cert);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(crypto())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// MinIO's ellipsis syntax: `http://minio-{1...3}.pigsty:9000/data{1...2}`.
pub fn expand(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let Some(close) = pattern[open..].find('}').map(|c| c + open) else {
        return vec![pattern.to_string()];
    };
    let inner = &pattern[open + 1..close];
    let Some((a, b)) = inner.split_once("...") else {
        return vec![pattern.to_string()];
    };
    let (a, b): (u32, u32) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
    (a..=b)
        .flat_map(|n| expand(&format!("{}{n}{}", &pattern[..open], &pattern[close + 1..])))
        .collect()
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    })
}

fn respond(conn: &mut dyn Stream, code: u16, body: &str) -> std::io::Result<()> {
    respond_as(conn, code, "application/xml", body)
}

fn respond_as(
    conn: &mut dyn Stream,
    code: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
    write!(
        conn,
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

fn s3_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
}

fn handle(cfg: &Config, tcp: TcpStream) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let stream: Box<dyn Stream> = match &cfg.tls {
        Some(tls) => Box::new(rustls::StreamOwned::new(
            rustls::ServerConnection::new(tls.clone()).map_err(std::io::Error::other)?,
            tcp,
        )),
        None => Box::new(tcp),
    };
    let mut reader = BufReader::new(stream);
    // Over TLS a plain-HTTP request fails here, in the handshake: no answer.
    let req = read_request(&mut reader)?;
    let conn: &mut dyn Stream = reader.get_mut();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/minio/health/live") => respond(conn, 200, ""),
        ("GET", "/minio/v2/metrics/cluster") => {
            let up = cfg.peers.iter().filter(|p| live(cfg, p)).count();
            let body = format!(
                "# TYPE minio_cluster_nodes_online_total gauge\n\
                 minio_cluster_nodes_online_total {up}\n\
                 # TYPE minio_cluster_nodes_offline_total gauge\n\
                 minio_cluster_nodes_offline_total {}\n",
                cfg.peers.len() - up
            );
            respond_as(conn, 200, "text/plain; version=0.0.4", &body)
        }
        ("GET", "/minio/health/cluster") => {
            // A single node (MINIO_VOLUMES a plain path) has no peers: it is its
            // own quorum.
            let up = cfg.peers.iter().filter(|p| live(cfg, p)).count();
            let quorum = cfg.peers.len() / 2 + 1;
            let (up, quorum) = if cfg.peers.is_empty() {
                (1, 1)
            } else {
                (up, quorum)
            };
            if up >= quorum {
                respond(conn, 200, "")
            } else {
                respond(
                    conn,
                    503,
                    &format!(
                        "{up} of {} members live, write quorum {quorum}",
                        cfg.peers.len()
                    ),
                )
            }
        }
        (_, p) if p.starts_with("/minio/admin/") && env(ADMIN_FLAG) == "1" => {
            if let Err((code, msg)) = verify(cfg, &req) {
                return respond(conn, 403, &admin_error(code, &msg));
            }
            let (code, body) = admin(cfg, &req)?;
            respond(conn, code, &body)
        }
        (_, p) if p.starts_with("/minio/admin/") => respond(
            conn,
            501,
            &s3_error("NotImplemented", "stand-in: no admin API"),
        ),
        // It stores no objects: a signed HEAD of one answers 404 (and no body).
        ("HEAD", p) if p.len() > 1 && p[1..].contains('/') => {
            if let Err((code, msg)) = verify(cfg, &req) {
                eprintln!("minio stand-in: refused: {code}: {msg}");
                return respond(conn, 403, "");
            }
            respond(conn, 404, "")
        }
        ("GET", p) if p.len() > 1 && !p[1..].trim_end_matches('/').contains('/') => {
            if let Err((code, msg)) = verify(cfg, &req) {
                return respond(conn, 403, &s3_error(code, &msg));
            }
            let bucket = p[1..].trim_end_matches('/');
            if !cfg.data.join(bucket).is_dir() {
                return respond(
                    conn,
                    404,
                    &s3_error("NoSuchBucket", "The specified bucket does not exist"),
                );
            }
            let prefix = query_value(&req.query, "prefix").unwrap_or_default();
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                 <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>0</KeyCount>\
                 <MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"
            );
            respond(conn, 200, &body)
        }
        ("PUT", p) if p.len() > 1 && !p[1..].contains('/') => {
            if let Err((code, msg)) = verify(cfg, &req) {
                return respond(conn, 403, &s3_error(code, &msg));
            }
            let dir = cfg.data.join(&p[1..]);
            if req.query == "versioning" {
                std::fs::write(dir.join(".versioning"), &req.body)?;
                return respond(conn, 200, "");
            }
            match std::fs::create_dir(&dir) {
                Ok(()) => respond(conn, 200, ""),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => respond(
                    conn,
                    409,
                    &s3_error(
                        "BucketAlreadyOwnedByYou",
                        "Your previous request to create the named bucket succeeded and you already own it.",
                    ),
                ),
                Err(e) => respond(conn, 500, &s3_error("InternalError", &e.to_string())),
            }
        }
        _ => respond(
            conn,
            501,
            &s3_error(
                "NotImplemented",
                &format!("stand-in: {} {} is not implemented", req.method, req.path),
            ),
        ),
    }
}

/// Whether a peer answers `live`; over https only with a certificate from the CA
/// that names it as the volume list does.
fn live(cfg: &Config, peer: &Peer) -> bool {
    if peer.addr == cfg.bind {
        return true;
    }
    // Names resolve as MinIO's do (/etc/hosts on a node).
    let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(&peer.addr)
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(500)));
    let mut s: Box<dyn Stream> = match &cfg.peer_tls {
        Some(tls) => {
            let Ok(name) = ServerName::try_from(peer.host.clone()) else {
                return false;
            };
            let Ok(conn) = rustls::ClientConnection::new(tls.clone(), name) else {
                return false;
            };
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let _ = write!(
        s,
        "GET /minio/health/live HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        peer.host
    );
    let _ = s.flush();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

/// Recompute the request's SigV4 signature with the root credentials.
fn verify(cfg: &Config, req: &Request) -> Result<(), (&'static str, String)> {
    let auth = req
        .headers
        .get("authorization")
        .cloned()
        .unwrap_or_default();
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    let credential = field("Credential");
    let mut cred = credential.split('/');
    let access = cred.next().unwrap_or_default();
    if access != cfg.user {
        return Err((
            "InvalidAccessKeyId",
            format!("The Access Key Id {access} does not exist"),
        ));
    }
    let (region, service) = (
        cred.nth(1).unwrap_or_default(),
        cred.next().unwrap_or_default(),
    );
    let signed = field("SignedHeaders");
    let headers: Vec<(&str, &str)> = signed
        .split(';')
        .map(|h| (h, req.headers.get(h).map_or("", String::as_str)))
        .collect();
    let payload = hex::encode(Sha256::digest(&req.body));
    if req.headers.get("x-amz-content-sha256") != Some(&payload) {
        return Err(("XAmzContentSHA256Mismatch", "payload hash differs".into()));
    }
    // As received (percent-encoded); the signer encodes them again.
    let decoded: Vec<(String, String)> = req
        .query
        .split('&')
        .filter(|q| !q.is_empty())
        .map(|q| q.split_once('=').unwrap_or((q, "")))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    let query: Vec<(&str, &str)> = decoded
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expected = authorization(
        &cfg.user,
        &cfg.password,
        &SignInput {
            method: &req.method,
            path: &req.path,
            query: &query,
            headers: &headers,
            payload_sha256: &payload,
            region,
            service,
            amz_date: req.headers.get("x-amz-date").map_or("", String::as_str),
        },
    );
    // Compared by signature: clients separate the fields with "," or ", ".
    let signature = |a: &str| {
        a.split([' ', ','])
            .find_map(|p| p.strip_prefix("Signature="))
            .unwrap_or_default()
            .to_string()
    };
    if signature(&expected).is_empty() || signature(&expected) != signature(&auth) {
        eprintln!(
            "minio stand-in: signature mismatch: got {auth:?}, headers {:?}",
            req.headers
        );
        return Err((
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.".into(),
        ));
    }
    Ok(())
}

// ---- The admin API (only with MINIO_STANDIN_ADMIN=1) --------------------------------
//
// As MinIO (cmd/admin-router.go, admin-handlers-users.go): `GET /info`,
// `GET /user-info?accessKey=`, `PUT /add-user?accessKey=` with a madmin-encrypted
// `{"secretKey","status"}`, `GET /info-canned-policy?name=`,
// `PUT /set-user-or-group-policy?policyName=&userOrGroup=&isGroup=`. Users are files
// under `<data>/.minio.sys/iam/users/`, so they survive a restart as MinIO's do.

/// MinIO's built-in canned policies.
pub const BUILTIN_POLICIES: [&str; 5] = [
    "consoleAdmin",
    "diagnostics",
    "readonly",
    "readwrite",
    "writeonly",
];

fn admin_error(code: &str, message: &str) -> String {
    serde_json::json!({ "Code": code, "Message": message }).to_string()
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn users_dir(data: &std::path::Path) -> PathBuf {
    data.join(".minio.sys/iam/users")
}

fn admin(cfg: &Config, req: &Request) -> std::io::Result<(u16, String)> {
    let op = req.path.trim_start_matches("/minio/admin/v3/");
    let users = users_dir(&cfg.data);
    let no_user = |name: &str| {
        (
            404,
            admin_error(
                "XMinioAdminNoSuchUser",
                &format!("The specified user {name} does not exist."),
            ),
        )
    };
    let user = query_value(&req.query, "accessKey").unwrap_or_default();
    Ok(match (req.method.as_str(), op) {
        ("GET", "info") => (200, "{\"mode\":\"online\"}".into()),
        ("GET", "user-info") => match std::fs::read_to_string(users.join(format!("{user}.json"))) {
            Ok(text) => {
                let mut v: serde_json::Value = serde_json::from_str(&text)?;
                // MinIO does not return the secret.
                v.as_object_mut().map(|o| o.remove("secretKey"));
                (200, v.to_string())
            }
            Err(_) => no_user(&user),
        },
        ("PUT", "add-user") => {
            if user.is_empty() || user == cfg.user {
                return Ok((
                    400,
                    admin_error("XMinioAdminInvalidArgument", "bad accessKey"),
                ));
            }
            let plain = match decrypt_data(&cfg.password, &req.body) {
                Ok(p) => p,
                Err(e) => return Ok((400, admin_error("XMinioAdminConfigBadJSON", &e))),
            };
            let body: serde_json::Value = match serde_json::from_slice(&plain) {
                Ok(v) => v,
                Err(e) => {
                    return Ok((400, admin_error("XMinioAdminConfigBadJSON", &e.to_string())));
                }
            };
            let secret = body["secretKey"].as_str().unwrap_or_default();
            if secret.len() < 8 || !matches!(body["status"].as_str(), Some("enabled" | "disabled"))
            {
                return Ok((
                    400,
                    admin_error("XMinioAdminInvalidArgument", &body.to_string()),
                ));
            }
            std::fs::create_dir_all(&users)?;
            let path = users.join(format!("{user}.json"));
            // MinIO keeps a user's policy mapping when the user is updated.
            let policy = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .map(|v| v["policyName"].clone())
                .unwrap_or(serde_json::Value::Null);
            let record = serde_json::json!({
                "secretKey": secret, "status": body["status"], "policyName": policy,
            });
            std::fs::write(&path, record.to_string())?;
            (200, String::new())
        }
        ("GET", "info-canned-policy") => {
            let name = query_value(&req.query, "name").unwrap_or_default();
            if BUILTIN_POLICIES.contains(&name.as_str()) {
                (200, "{\"Version\":\"2012-10-17\",\"Statement\":[]}".into())
            } else {
                (
                    404,
                    admin_error(
                        "XMinioAdminNoSuchPolicy",
                        "The canned policy does not exist.",
                    ),
                )
            }
        }
        ("PUT", "set-user-or-group-policy") => {
            let name = query_value(&req.query, "userOrGroup").unwrap_or_default();
            let policy = query_value(&req.query, "policyName").unwrap_or_default();
            if query_value(&req.query, "isGroup").as_deref() != Some("false") {
                return Ok((400, admin_error("XMinioAdminInvalidArgument", "isGroup")));
            }
            if !BUILTIN_POLICIES.contains(&policy.as_str()) {
                return Ok((
                    404,
                    admin_error(
                        "XMinioAdminNoSuchPolicy",
                        "The canned policy does not exist.",
                    ),
                ));
            }
            let path = users.join(format!("{name}.json"));
            let Ok(text) = std::fs::read_to_string(&path) else {
                return Ok(no_user(&name));
            };
            let mut v: serde_json::Value = serde_json::from_str(&text)?;
            v["policyName"] = policy.into();
            std::fs::write(&path, v.to_string())?;
            (200, String::new())
        }
        _ => (
            501,
            admin_error(
                "NotImplemented",
                &format!("stand-in: no {} {op}", req.method),
            ),
        ),
    })
}

/// madmin's `DecryptData`, written from madmin-go `encrypt.go` and secure-io/sio-go
/// (`sio.go`, `writer.go`) apart from the agent's encryptor: `salt(32) | id(1) |
/// nonce(8) | fragments`. Only id 0x00 (Argon2id, AES-256-GCM) is understood.
/// Fragments are 16 KiB of plaintext plus a 16-byte tag; the one that leaves no more
/// than that behind is the last. Each is opened with the nonce `nonce || LE32(seq)`
/// (seq from 1) and associated data `flag || T`, where flag is 0x80 on the last
/// fragment and T is the tag of the empty message sealed under seq 0.
pub fn decrypt_data(password: &str, data: &[u8]) -> Result<Vec<u8>, String> {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
    const FRAGMENT: usize = 16384 + 16;
    if data.len() < 41 + 16 {
        return Err(format!("{} bytes: too short", data.len()));
    }
    let (salt, id, nonce, mut rest) = (&data[..32], data[32], &data[33..41], &data[41..]);
    if id != 0x00 {
        return Err(format!("AEAD id {id:#04x} is not Argon2id/AES-256-GCM"));
    }
    let mut key = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(65536, 1, 4, Some(32)).map_err(|e| e.to_string())?,
    )
    .hash_password_into(password.as_bytes(), salt, &mut key)
    .map_err(|e| e.to_string())?;
    let aead = Aes256Gcm::new_from_slice(&key).map_err(|e| e.to_string())?;
    let iv = |seq: u32| {
        let mut n = nonce.to_vec();
        n.extend_from_slice(&seq.to_le_bytes());
        n
    };
    let mut ad = vec![0x00];
    ad.extend(
        aead.encrypt(Nonce::from_slice(&iv(0)), Payload { msg: b"", aad: b"" })
            .map_err(|e| e.to_string())?,
    );
    let mut out = Vec::new();
    let mut seq = 1u32;
    loop {
        let last = rest.len() <= FRAGMENT;
        let n = rest.len().min(FRAGMENT);
        if last {
            ad[0] = 0x80;
        }
        let plain = aead
            .decrypt(
                Nonce::from_slice(&iv(seq)),
                Payload {
                    msg: &rest[..n],
                    aad: &ad,
                },
            )
            .map_err(|_| format!("fragment {seq}: not authentic"))?;
        out.extend(plain);
        rest = &rest[n..];
        if last {
            return Ok(out);
        }
        seq += 1;
    }
}
