//! MinIO-compatible servers (MinIO, RustFS, Silo): the `minio` step starts the local
//! member (every member has the same volume list) and waits for
//! `/minio/health/cluster`; `minio-buckets`, on the first member, creates the buckets
//! with SigV4-signed S3 requests (409 means it exists already).
//!
//! Users and policies go through MinIO's admin API, whose request bodies MinIO
//! encrypts with the root secret; the agent only probes whether the server has that
//! API and reports users it could not create, rather than guessing a format.

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::Agent;
use super::input::MinioInfo;
use super::patroni::brief;
use super::retry::Attempt;

const UNIT: &str = "minio.service";
const REGION: &str = "us-east-1";
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What one request signs: the canonical parts of an AWS Signature Version 4.
#[derive(Debug, Clone)]
pub struct SignInput<'a> {
    pub method: &'a str,
    /// The URI path, already percent-encoded (`/pgsql`).
    pub path: &'a str,
    /// Query parameters, not yet sorted or encoded (`versioning` → `("versioning", "")`).
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign (`host`, `x-amz-date`, `x-amz-content-sha256`, ...).
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// `20150830T123600Z`.
    pub amz_date: &'a str,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn canonical_request(i: &SignInput) -> (String, String) {
    let mut query: Vec<(String, String)> = i
        .query
        .iter()
        .map(|(k, v)| (encode(k), encode(v)))
        .collect();
    query.sort();
    let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut headers: Vec<(String, String)> = i
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let text = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        i.method,
        i.path,
        query.join("&"),
        i.payload_sha256
    );
    (text, signed)
}

/// The `Authorization` header value for a request.
pub fn authorization(access_key: &str, secret_key: &str, i: &SignInput) -> String {
    let (canonical, signed) = canonical_request(i);
    let date = &i.amz_date[..8.min(i.amz_date.len())];
    let scope = format!("{date}/{}/{}/aws4_request", i.region, i.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        i.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    for part in [i.region, i.service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC).
pub fn amz_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A path-style S3 client of one server (`http://10.10.10.11:9000`).
pub struct S3 {
    pub base: String,
    access_key: String,
    secret_key: String,
    http: reqwest::blocking::Client,
}

impl S3 {
    pub fn new(
        base: &str,
        access_key: &str,
        secret_key: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<S3> {
        Ok(S3 {
            base: base.trim_end_matches('/').to_string(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            http: reqwest::blocking::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                // Peers are addressed directly, never through a proxy from the environment.
                .no_proxy()
                .build()
                .context("building the HTTP client")?,
        })
    }

    /// A signed request; returns the status and body text.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let host = self
            .base
            .split("://")
            .nth(1)
            .unwrap_or(&self.base)
            .to_string();
        let date = amz_date(super::state::now());
        let payload = hex::encode(Sha256::digest(body));
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", &host),
            ("x-amz-date", &date),
            ("x-amz-content-sha256", &payload),
        ];
        headers.extend_from_slice(extra);
        let auth = authorization(
            &self.access_key,
            &self.secret_key,
            &SignInput {
                method,
                path,
                query,
                headers: &headers,
                payload_sha256: &payload,
                region: REGION,
                service: "s3",
                amz_date: &date,
            },
        );
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    encode(k)
                } else {
                    format!("{}={}", encode(k), encode(v))
                }
            })
            .collect();
        let url = if q.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, q.join("&"))
        };
        let method_v = reqwest::Method::from_bytes(method.as_bytes()).context("HTTP method")?;
        let mut req = self
            .http
            .request(method_v, &url)
            .header("authorization", auth);
        for (k, v) in &headers {
            if *k != "host" {
                req = req.header(*k, *v);
            }
        }
        let resp = req
            .body(body.to_vec())
            .send()
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().unwrap_or_default()))
    }
}

/// Whether a bucket was made now or was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    Created,
    Existed,
}

/// `PUT /<bucket>`: 200 creates it, 409 means it is there already.
pub fn create_bucket(s3: &S3, name: &str, lock: bool) -> Attempt<Made> {
    let extra: &[(&str, &str)] = if lock {
        &[("x-amz-bucket-object-lock-enabled", "true")]
    } else {
        &[]
    };
    match s3.send("PUT", &format!("/{}", encode(name)), &[], extra, b"") {
        Ok((200, _)) => Attempt::Ready(Made::Created),
        Ok((409, _)) => Attempt::Ready(Made::Existed),
        // Wrong keys or a refused signature: waiting will not fix it.
        Ok((code @ (400 | 401 | 403), body)) => Attempt::Fatal(anyhow::anyhow!(
            "PUT {}/{name}: HTTP {code}: {}",
            s3.base,
            s3_error(&body)
        )),
        Ok((code, body)) => Attempt::NotYet(format!("HTTP {code}: {}", s3_error(&body))),
        Err(e) => Attempt::NotYet(format!("{e:#}")),
    }
}

/// `<Code>` and `<Message>` of an S3 error document, or its first line.
fn s3_error(body: &str) -> String {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{t}>"))? + start;
        Some(body[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => brief(body),
    }
}

fn local_url(m: &MinioInfo) -> anyhow::Result<String> {
    let me = m
        .members
        .iter()
        .find(|x| x.name == m.name)
        .with_context(|| format!("node.json: {} is not in minio.members", m.name))?;
    Ok(format!("http://{}:{}", me.ip, m.port))
}

/// Wait until `/minio/health/cluster` answers 200 (write quorum).
fn wait_cluster(agent: &Agent, step: &str, base: &str) -> anyhow::Result<()> {
    let http = super::patroni::http_client(agent)?;
    let url = format!("{base}/minio/health/cluster");
    agent.opts.policy().wait(
        step,
        "/minio/health/cluster to answer 200 (write quorum)",
        &url,
        || match super::patroni::get(&http, &url) {
            Ok((200, _)) => Attempt::Ready(()),
            Ok((code, body)) => Attempt::NotYet(format!("HTTP {code} {}", brief(&body))),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        },
    )?;
    Ok(())
}

/// `minio`: start the local member and wait for the cluster's write quorum.
pub fn start(agent: &mut Agent) -> anyhow::Result<String> {
    let m = agent
        .doc
        .minio
        .clone()
        .context("node.json has no minio section")?;
    let base = local_url(&m)?;
    agent.services.start(UNIT)?;
    agent.checkpoint("minio:started")?;
    wait_cluster(agent, "minio", &base)?;
    Ok(format!(
        "{} ({}) serves {} with write quorum",
        m.name, m.server_bin, m.volumes
    ))
}

/// `minio-buckets`: on the first member, create the buckets (and report users).
pub fn buckets(agent: &mut Agent) -> anyhow::Result<String> {
    let m = agent
        .doc
        .minio
        .clone()
        .context("node.json has no minio section")?;
    let base = local_url(&m)?;
    wait_cluster(agent, "minio-buckets", &base)?;
    let s3 = S3::new(&base, &m.access_key, &m.secret_key, agent.opts.request)?;
    let (mut created, mut existed) = (Vec::new(), Vec::new());
    for b in &m.buckets {
        let lock = b.lock.unwrap_or(false);
        let made = agent.opts.policy().wait(
            "minio-buckets",
            &format!("PUT /{}", b.name),
            &base,
            || create_bucket(&s3, &b.name, lock),
        )?;
        if b.versioning.unwrap_or(false) {
            enable_versioning(agent, &s3, &b.name)?;
        }
        match made {
            Made::Created => created.push(b.name.clone()),
            Made::Existed => existed.push(b.name.clone()),
        }
        agent.checkpoint(&format!("minio-buckets:{}", b.name))?;
    }
    let users = users_note(&s3, &m);
    Ok(format!(
        "buckets created [{}], already there [{}]; {users}",
        created.join(", "),
        existed.join(", ")
    ))
}

fn enable_versioning(agent: &Agent, s3: &S3, bucket: &str) -> anyhow::Result<()> {
    let body = br#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
    let path = format!("/{}", encode(bucket));
    agent.opts.policy().wait(
        "minio-buckets",
        &format!("versioning of {bucket}"),
        &s3.base,
        || match s3.send("PUT", &path, &[("versioning", "")], &[], body) {
            Ok((200, _)) => Attempt::Ready(()),
            Ok((code @ (400 | 401 | 403), text)) => Attempt::Fatal(anyhow::anyhow!(
                "versioning of {bucket}: HTTP {code}: {}",
                s3_error(&text)
            )),
            Ok((code, text)) => Attempt::NotYet(format!("HTTP {code}: {}", s3_error(&text))),
            Err(e) => Attempt::NotYet(format!("{e:#}")),
        },
    )?;
    Ok(())
}

/// Users need MinIO's admin API; say whether the server has one. A server without it
/// (RustFS, Silo, or one that answers 404/501 there) is not an error: the buckets are
/// made, and the detail names the users left for the operator.
fn users_note(s3: &S3, m: &MinioInfo) -> String {
    if m.users.is_empty() {
        return "no users to create".into();
    }
    let names: Vec<&str> = m.users.iter().map(|u| u.access_key.as_str()).collect();
    let url = format!("{}/minio/admin/v3/info", s3.base);
    let why = match s3.send("GET", "/minio/admin/v3/info", &[], &[], b"") {
        Ok((200, _)) => "the server has MinIO's admin API, whose encrypted request format \
                         the agent does not implement yet; create them with mc admin"
            .to_string(),
        Ok((code @ (401 | 403), body)) => format!(
            "the admin API refused the root credentials (GET {url}: HTTP {code}: {})",
            s3_error(&body)
        ),
        Ok((code, body)) => format!(
            "the server has no MinIO admin API (GET {url}: HTTP {code}: {})",
            s3_error(&body)
        ),
        Err(e) => format!("the admin API did not answer: {e:#}"),
    };
    let note = format!("users [{}] not created: {why}", names.join(", "));
    tracing::warn!("{note}");
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// AWS's SigV4 test suite, get-vanilla.
    #[test]
    fn aws_sigv4_test_suite_get_vanilla() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let input = SignInput {
            method: "GET",
            path: "/",
            query: &[],
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        };
        let (canonical, _) = canonical_request(&input);
        assert_eq!(
            hex::encode(Sha256::digest(canonical.as_bytes())),
            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            authorization("AKIDEXAMPLE", SUITE_SECRET, &input),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// Amazon S3 API reference, "Signature Calculations for the Authorization Header",
    /// example GET Object (with a Range header).
    #[test]
    fn s3_documented_get_object_example() {
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let auth = authorization(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            &SignInput {
                method: "GET",
                path: "/test.txt",
                query: &[],
                headers: &headers,
                payload_sha256: EMPTY_SHA256,
                region: "us-east-1",
                service: "s3",
                amz_date: "20130524T000000Z",
            },
        );
        assert!(
            auth.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"));
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn s3_errors_are_short() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>";
        assert_eq!(
            s3_error(body),
            "SignatureDoesNotMatch: The request signature we calculated does not match"
        );
    }
}
