//! The one way the agent and the lab talk HTTP to cluster peers (etcd, Patroni, MinIO):
//! a blocking client that never goes through a proxy from the environment and whose
//! connects and requests are bounded, and requests that answer (status, body) with
//! the method and URL in every error.

use std::time::Duration;

use anyhow::Context;

pub use reqwest::blocking::Client;

/// A client for peers on the cluster network. A proxy from the environment must not
/// carry cluster traffic off the node's network, and a silent peer must not stall a
/// wait: a connect gives up after `connect`, a whole request after `request`.
pub fn client(connect: Duration, request: Duration) -> anyhow::Result<Client> {
    Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

/// What a client presents and trusts on the fleet's TLS links (PEM each): the fleet
/// CA, the only root it trusts, and its own certificate and key, for servers that ask
/// for a client certificate (etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl Tls {
    /// Read the three PEM files.
    pub fn read(ca: &str, cert: &str, key: &str) -> anyhow::Result<Tls> {
        let read = |p: &str| std::fs::read_to_string(p).with_context(|| format!("reading {p}"));
        Ok(Tls {
            ca: read(ca)?,
            cert: read(cert)?,
            key: read(key)?,
        })
    }
}

/// [`client`], trusting only the fleet CA and presenting the node's certificate.
pub fn client_tls(connect: Duration, request: Duration, tls: &Tls) -> anyhow::Result<Client> {
    let identity = reqwest::Identity::from_pem(format!("{}\n{}", tls.cert, tls.key).as_bytes())
        .context("reading the client certificate and key")?;
    tls_builder(connect, request, &tls.ca)?
        .identity(identity)
        .build()
        .context("building the HTTPS client")
}

/// [`client`], trusting only the CA `ca` (PEM), for servers that ask no client
/// certificate (MinIO).
pub fn client_trusting(connect: Duration, request: Duration, ca: &str) -> anyhow::Result<Client> {
    tls_builder(connect, request, ca)?
        .build()
        .context("building the HTTPS client")
}

fn tls_builder(
    connect: Duration,
    request: Duration,
    ca: &str,
) -> anyhow::Result<reqwest::blocking::ClientBuilder> {
    let ca = reqwest::Certificate::from_pem(ca.as_bytes()).context("reading the CA certificate")?;
    Ok(Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .connect_timeout(connect)
        .timeout(request)
        .no_proxy())
}

/// `GET url`: the status code and body text.
pub fn get(http: &Client, url: &str) -> anyhow::Result<(u16, String)> {
    answer("GET", url, http.get(url).send())
}

/// `POST url` with a JSON body: the status code and body text.
pub fn post_json(
    http: &Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    answer("POST", url, http.post(url).json(body).send())
}

/// Any method, with extra headers and a body: the status code and body text.
pub fn send(
    http: &Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let m = reqwest::Method::from_bytes(method.as_bytes())
        .with_context(|| format!("HTTP method {method:?}"))?;
    let mut req = http.request(m, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    answer(method, url, req.body(body.to_vec()).send())
}

fn answer(
    method: &str,
    url: &str,
    sent: reqwest::Result<reqwest::blocking::Response>,
) -> anyhow::Result<(u16, String)> {
    let resp = sent.with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().unwrap_or_default()))
}

/// The first line of an answer, short enough for a log line.
pub fn brief(body: &str) -> String {
    let line = body.lines().next().unwrap_or_default().trim();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brief_keeps_the_first_line_short() {
        assert_eq!(brief("  no leader \nsecond line"), "no leader");
        assert_eq!(brief(&"x".repeat(500)).len(), 200);
        assert_eq!(brief(""), "");
    }

    #[test]
    fn errors_name_the_method_and_url() {
        let http = client(Duration::from_millis(500), Duration::from_secs(1)).unwrap();
        // A port just freed on loopback: the connect is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/health");
        let err = get(&http, &url).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("GET {url}: ")),
            "{err:#}"
        );
        let err = send(&http, "BAD METHOD", &url, &[], b"").unwrap_err();
        assert!(format!("{err:#}").contains("BAD METHOD"), "{err:#}");
    }
}
