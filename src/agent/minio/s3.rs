//! A path-style S3 client of one MinIO-compatible server, signing with SigV4, and the
//! calls of MinIO's admin API (`/minio/admin/v3`) the agent makes with it. Each call
//! answers an [`Attempt`]: done, worth waiting for, or a refusal that waiting will not
//! change.

use anyhow::anyhow;
use sha2::{Digest, Sha256};

use super::madmin;
use super::sigv4::{SignInput, amz_date, authorization, encode};
use crate::agent::retry::Attempt;
use crate::agent::state::now;
use crate::http;

const REGION: &str = "us-east-1";

/// A path-style S3 client of one server (`https://10.10.10.11:9000`).
pub struct S3 {
    pub base: String,
    access_key: String,
    secret_key: String,
    http: http::Client,
}

impl S3 {
    /// A client of `base` (`https://10.10.10.11:9000`) over `http`, which trusts the
    /// fleet CA when the base is https.
    pub fn new(base: &str, access_key: &str, secret_key: &str, http: http::Client) -> S3 {
        S3 {
            base: base.trim_end_matches('/').to_string(),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            http,
        }
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
        let host = self.base.split("://").nth(1).unwrap_or(&self.base);
        let date = amz_date(now());
        let payload = hex::encode(Sha256::digest(body));
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", host),
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
        // The client sets `host` from the URL.
        headers.retain(|(k, _)| *k != "host");
        headers.push(("authorization", &auth));
        http::send(&self.http, method, &self.url(path, query), &headers, body)
    }

    /// The URL of `path` with the query encoded as it was signed.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
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
        if q.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, q.join("&"))
        }
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
        Ok((code @ (400 | 401 | 403), body)) => Attempt::Fatal(anyhow!(
            "PUT {}/{name}: HTTP {code}: {}",
            s3.base,
            s3_error(&body)
        )),
        Ok((code, body)) => Attempt::NotYet(format!("HTTP {code}: {}", s3_error(&body))),
        Err(e) => Attempt::NotYet(format!("{e:#}")),
    }
}

/// `PUT /<bucket>?versioning`: versioning enabled (again, harmlessly, if it was).
pub fn enable_versioning(s3: &S3, bucket: &str) -> Attempt<()> {
    let body = br#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
    let path = format!("/{}", encode(bucket));
    match s3.send("PUT", &path, &[("versioning", "")], &[], body) {
        Ok((200, _)) => Attempt::Ready(()),
        Ok((code @ (400 | 401 | 403), text)) => Attempt::Fatal(anyhow!(
            "versioning of {bucket}: HTTP {code}: {}",
            s3_error(&text)
        )),
        Ok((code, text)) => Attempt::NotYet(format!("HTTP {code}: {}", s3_error(&text))),
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
        _ => http::brief(body),
    }
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
            None if (400..500).contains(&code) => {
                Attempt::Fatal(anyhow!("{what}: HTTP {code}: {}", admin_error(&text)))
            }
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
pub fn probe_admin(s3: &S3) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
