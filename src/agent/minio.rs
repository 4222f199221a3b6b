//! MinIO-compatible servers (MinIO, RustFS, Silo): the `minio` step starts the local
//! member (every member has the same volume list) and waits for
//! `/minio/health/cluster`; `minio-buckets`, on the first member, creates the buckets
//! with SigV4-signed S3 requests (409 means it exists already).
//!
//! Users and policies go through MinIO's admin API (`/minio/admin/v3`), whose
//! sensitive request bodies are encrypted with the root secret in madmin's format
//! (`encrypt_data`). A server without that API (RustFS, Silo) is not an error: the
//! detail names the users left for the operator.

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::Agent;
use super::patroni::brief;
use super::retry::Attempt;
use crate::plan::node_json::MinioInfo;

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

/// madmin's `EncryptData` (madmin-go `encrypt.go`), which MinIO's admin handlers undo
/// with `DecryptData` keyed by the root secret:
/// `salt (32) || AEAD id (1) || nonce (8) || sio-go stream of the data`, the key being
/// Argon2id(password, salt, t=1, m=64 MiB, p=4, 32 bytes). Id 0x00 is AES-256-GCM with
/// that key (0x01 ChaCha20-Poly1305, 0x02 AES-256-GCM under PBKDF2 for FIPS builds):
/// MinIO accepts all three, and the agent always sends 0x00.
pub mod madmin {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
    use anyhow::Context;

    pub const SALT_LEN: usize = 32;
    pub const NONCE_LEN: usize = 8;
    pub const ARGON2ID_AES_GCM: u8 = 0x00;
    /// sio-go's `BufSize`: the plaintext size of every fragment but the last.
    pub const FRAGMENT: usize = 1 << 14;
    pub const TAG_LEN: usize = 16;

    /// Argon2id as madmin calls it: `argon2.IDKey(password, salt, 1, 64*1024, 4, 32)`.
    pub fn derive_key(password: &str, salt: &[u8]) -> anyhow::Result<[u8; 32]> {
        let params = argon2::Params::new(64 * 1024, 1, 4, Some(32))
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = [0u8; 32];
        argon
            .hash_password_into(password.as_bytes(), salt, &mut key)
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
        Ok(key)
    }

    /// The AEAD nonce of fragment `seq`: the stream nonce, then `seq` little-endian.
    pub fn fragment_nonce(nonce: &[u8; NONCE_LEN], seq: u32) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..NONCE_LEN].copy_from_slice(nonce);
        n[NONCE_LEN..].copy_from_slice(&seq.to_le_bytes());
        n
    }

    /// `EncryptData(password, data)` with fresh random salt and nonce.
    pub fn encrypt_data(password: &str, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("random salt: {e}"))?;
        getrandom::getrandom(&mut nonce).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
        let key = derive_key(password, &salt)?;
        let mut out = Vec::with_capacity(SALT_LEN + 1 + NONCE_LEN + data.len() + TAG_LEN);
        out.extend_from_slice(&salt);
        out.push(ARGON2ID_AES_GCM);
        out.extend_from_slice(&nonce);
        out.extend(seal_stream(&key, &nonce, data)?);
        Ok(out)
    }

    /// sio-go's `EncWriter` given all the data at once (`Write` then `Close`). The
    /// associated data of every fragment is a flag byte (0x00, 0x80 on the last) and
    /// the tag of an empty message sealed under sequence number 0; data fragments
    /// count from 1, and the last holds 0..=FRAGMENT bytes (exactly FRAGMENT when the
    /// data fills whole fragments, none when the data is empty).
    pub fn seal_stream(
        key: &[u8; 32],
        nonce: &[u8; NONCE_LEN],
        data: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        let aead = Aes256Gcm::new_from_slice(key).map_err(|e| anyhow::anyhow!("AES key: {e}"))?;
        let seal = |seq: u32, msg: &[u8], aad: &[u8]| {
            aead.encrypt(
                Nonce::from_slice(&fragment_nonce(nonce, seq)),
                Payload { msg, aad },
            )
            .map_err(|e| anyhow::anyhow!("AES-GCM: {e}"))
        };
        let mut aad = vec![0x00];
        aad.extend(seal(0, b"", b"")?);
        let mut out = Vec::with_capacity(data.len() + TAG_LEN * (data.len() / FRAGMENT + 1));
        let (mut rest, mut seq) = (data, 1u32);
        while rest.len() > FRAGMENT {
            out.extend(seal(seq, &rest[..FRAGMENT], &aad)?);
            rest = &rest[FRAGMENT..];
            seq = seq.checked_add(1).context("sio: data limit exceeded")?;
        }
        aad[0] = 0x80;
        out.extend(seal(seq, rest, &aad)?);
        Ok(out)
    }
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

/// `minio-buckets`: on the first member, create the buckets, then the users.
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
    let users = users(agent, &s3, &m)?;
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

/// `Code: Message` of an admin API error (JSON), else of an S3 error document.
fn admin_error(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct AdminError {
        #[serde(rename = "Code")]
        code: String,
        #[serde(rename = "Message", default)]
        message: String,
    }
    match serde_json::from_str::<AdminError>(body) {
        Ok(e) if e.message.is_empty() => e.code,
        Ok(e) => format!("{}: {}", e.code, e.message),
        Err(_) => s3_error(body),
    }
}

const ADMIN: &str = "/minio/admin/v3";

/// One admin request: 200 is done; a refusal (4xx) will not change by waiting.
fn admin_call<T>(
    s3: &S3,
    method: &str,
    op: &str,
    query: &[(&str, &str)],
    body: &[u8],
    on: impl Fn(u16, &str) -> Option<T>,
) -> Attempt<T> {
    let what = format!("{method} {}{ADMIN}/{op}", s3.base);
    match s3.send(method, &format!("{ADMIN}/{op}"), query, &[], body) {
        Ok((code, text)) => match on(code, &text) {
            Some(v) => Attempt::Ready(v),
            None if (400..500).contains(&code) => Attempt::Fatal(anyhow::anyhow!(
                "{what}: HTTP {code}: {}",
                admin_error(&text)
            )),
            None => Attempt::NotYet(format!("HTTP {code}: {}", admin_error(&text))),
        },
        Err(e) => Attempt::NotYet(format!("{e:#}")),
    }
}

/// `GET user-info`: whether the user exists (404 `XMinioAdminNoSuchUser` if not).
pub fn user_exists(s3: &S3, name: &str) -> Attempt<bool> {
    admin_call(
        s3,
        "GET",
        "user-info",
        &[("accessKey", name)],
        b"",
        |code, text| match code {
            200 => Some(true),
            404 if text.contains("NoSuchUser") => Some(false),
            _ => None,
        },
    )
}

/// `PUT add-user?accessKey=`: creates the user, or updates the secret and status of
/// one that exists (MinIO's `SetUser`); the body is madmin-encrypted with the root
/// secret.
pub fn put_user(s3: &S3, name: &str, secret: &str) -> Attempt<()> {
    let body = serde_json::json!({ "secretKey": secret, "status": "enabled" }).to_string();
    let sealed = match madmin::encrypt_data(&s3.secret_key, body.as_bytes()) {
        Ok(b) => b,
        Err(e) => return Attempt::Fatal(e.context(format!("encrypting the body for {name}"))),
    };
    admin_call(
        s3,
        "PUT",
        "add-user",
        &[("accessKey", name)],
        &sealed,
        |code, _| (code == 200).then_some(()),
    )
}

/// `GET info-canned-policy?name=`: whether the policy exists (built-in ones do).
pub fn policy_exists(s3: &S3, policy: &str) -> Attempt<bool> {
    admin_call(
        s3,
        "GET",
        "info-canned-policy",
        &[("name", policy)],
        b"",
        |code, text| match code {
            200 => Some(true),
            404 if text.contains("NoSuchPolicy") => Some(false),
            _ => None,
        },
    )
}

/// `PUT set-user-or-group-policy`: the user's policy becomes exactly `policy`, so a
/// repeat is harmless (the newer `idp/builtin/policy/attach` refuses a policy that is
/// attached already).
pub fn set_user_policy(s3: &S3, name: &str, policy: &str) -> Attempt<()> {
    admin_call(
        s3,
        "PUT",
        "set-user-or-group-policy",
        &[
            ("policyName", policy),
            ("userOrGroup", name),
            ("isGroup", "false"),
        ],
        b"",
        |code, _| (code == 200).then_some(()),
    )
}

/// Whether the server has MinIO's admin API: `Ok(())` if so, else why not.
fn probe_admin(s3: &S3) -> Result<(), String> {
    let url = format!("{}{ADMIN}/info", s3.base);
    match s3.send("GET", &format!("{ADMIN}/info"), &[], &[], b"") {
        Ok((200, _)) => Ok(()),
        Ok((code @ (401 | 403), body)) => Err(format!(
            "the admin API refused the root credentials (GET {url}: HTTP {code}: {})",
            admin_error(&body)
        )),
        Ok((code, body)) => Err(format!(
            "the server has no MinIO admin API (GET {url}: HTTP {code}: {})",
            admin_error(&body)
        )),
        Err(e) => Err(format!("the admin API did not answer: {e:#}")),
    }
}

/// Users and their policies through the admin API. A server without it (RustFS,
/// Silo, or one that answers 404/501 there) is not an error: the buckets are made,
/// and the detail names the users left for the operator.
fn users(agent: &Agent, s3: &S3, m: &MinioInfo) -> anyhow::Result<String> {
    if m.users.is_empty() {
        return Ok("no users to create".into());
    }
    if let Err(why) = probe_admin(s3) {
        let names: Vec<&str> = m.users.iter().map(|u| u.access_key.as_str()).collect();
        let note = format!("users [{}] not created: {why}", names.join(", "));
        tracing::warn!("{note}");
        return Ok(note);
    }
    let wait = |what: String, f: &dyn Fn() -> Attempt<bool>| {
        agent
            .opts
            .policy()
            .wait("minio-buckets", &what, &s3.base, f)
    };
    // Policies first: a user is only pointed at a policy the server has.
    let (mut present, mut missing) = (Vec::new(), Vec::new());
    let mut policies: Vec<&str> = m.users.iter().filter_map(|u| u.policy.as_deref()).collect();
    policies.retain(|p| !p.is_empty());
    policies.sort();
    policies.dedup();
    for p in policies {
        match wait(format!("policy {p}"), &|| policy_exists(s3, p))? {
            true => present.push(p),
            false => missing.push(p),
        }
    }
    let (mut created, mut existed, mut attached) = (Vec::new(), Vec::new(), Vec::new());
    for u in &m.users {
        let name = u.access_key.as_str();
        let there = wait(format!("user-info {name}"), &|| user_exists(s3, name))?;
        agent.opts.policy().wait(
            "minio-buckets",
            &format!("add-user {name}"),
            &s3.base,
            || put_user(s3, name, &u.secret_key),
        )?;
        if let Some(policy) = u.policy.as_deref()
            && present.contains(&policy)
        {
            agent.opts.policy().wait(
                "minio-buckets",
                &format!("policy {policy} for {name}"),
                &s3.base,
                || set_user_policy(s3, name, policy),
            )?;
            attached.push(format!("{name}={policy}"));
        }
        if there { &mut existed } else { &mut created }.push(name);
        agent.checkpoint(&format!("minio-user:{name}"))?;
    }
    let mut note = format!(
        "users created [{}], already there [{}]; policies already there [{}], attached [{}]",
        created.join(", "),
        existed.join(", "),
        present.join(", "),
        attached.join(", ")
    );
    if !missing.is_empty() {
        let gap = format!(
            "policies [{}] not on the server and not attached: the inventory carries no \
             policy document to create them from",
            missing.join(", ")
        );
        tracing::warn!("{gap}");
        note = format!("{note}; {gap}");
    }
    Ok(note)
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

    /// The sio-go layout: every fragment but the last is 16 KiB + a 16-byte tag; the
    /// last holds the rest (all of a 16 KiB remainder; only a tag for no data).
    #[test]
    fn sio_fragments() {
        let (key, nonce) = ([7u8; 32], [9u8; madmin::NONCE_LEN]);
        for (len, sealed) in [
            (0, 16),
            (1, 17),
            (16384, 16400),
            (16385, 16400 + 17),
            (3 * 16384, 3 * 16400),
        ] {
            let out = madmin::seal_stream(&key, &nonce, &vec![0u8; len]).unwrap();
            assert_eq!(out.len(), sealed, "{len} bytes");
        }
        // A different nonce gives a different stream.
        let a = madmin::seal_stream(&key, &nonce, b"x").unwrap();
        let b = madmin::seal_stream(&key, &[8u8; 8], b"x").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn encrypted_header() {
        let out = madmin::encrypt_data("root.secret", br#"{"status":"enabled"}"#).unwrap();
        assert_eq!(out.len(), 32 + 1 + 8 + 20 + 16);
        assert_eq!(out[32], madmin::ARGON2ID_AES_GCM);
        let again = madmin::encrypt_data("root.secret", br#"{"status":"enabled"}"#).unwrap();
        assert_ne!(out[..32], again[..32], "a fresh salt each time");
    }

    #[test]
    fn admin_errors_are_short() {
        let body = r#"{"Code":"XMinioAdminNoSuchUser","Message":"The specified user does not exist.","Resource":"/minio/admin/v3/user-info"}"#;
        assert_eq!(
            admin_error(body),
            "XMinioAdminNoSuchUser: The specified user does not exist."
        );
        assert_eq!(
            admin_error("<Error><Code>NotImplemented</Code></Error>"),
            "NotImplemented"
        );
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
