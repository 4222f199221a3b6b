//! A small client for etcd's JSON gateway (etcd 3.4: `POST /v3/...`). Keys and values
//! travel base64-encoded, 64-bit ids come back as JSON strings, and fields that are
//! zero or empty are left out, so every field here has a default.

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::http;

/// One etcd endpoint (`https://10.10.10.11:2379`).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: http::Client,
    user: Option<(String, String)>,
    /// The auth token of `user`, fetched on first use and again when etcd says it
    /// expired (simple tokens live 5 minutes).
    token: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// How a client reaches a secured etcd: TLS with the fleet CA and a client
/// certificate, and an RBAC user. `Access::default()` is plain http, no user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub tls: Option<http::Tls>,
    /// User and password.
    pub user: Option<(String, String)>,
}

/// An [`Access`] kept as file paths and a user (the operator's, in the lab's state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub user: String,
    pub password: String,
}

impl AccessFiles {
    pub fn load(&self) -> anyhow::Result<Access> {
        Ok(Access {
            tls: Some(http::Tls::read(&self.ca, &self.cert, &self.key)?),
            user: Some((self.user.clone(), self.password.clone())),
        })
    }
}

/// The access kept, or plain http when none is.
pub fn load_access(files: Option<&AccessFiles>) -> anyhow::Result<Access> {
    files.map_or_else(|| Ok(Access::default()), AccessFiles::load)
}

impl Access {
    /// The URL scheme this access uses.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The client URL of `node`'s etcd member with this access (`None`: not a member).
    pub fn url_of(&self, node: &crate::model::Node) -> Option<String> {
        let e = node.etcd.as_ref()?;
        Some(format!(
            "{}://{}:{}",
            self.scheme(),
            node.ip,
            e.params.etcd_port
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Member {
    #[serde(rename = "ID", deserialize_with = "u64_from_string")]
    pub id: u64,
    /// Empty until the member has started once, for a member added by `member add`;
    /// a member of the static bootstrap list has its name from the start.
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
}

impl Member {
    /// The member has run: it published its name and client URLs. A member of the
    /// static bootstrap list that never started has a name (from that list) but no
    /// client URLs.
    pub fn started(&self) -> bool {
        !self.name.is_empty() && !self.client_urls.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct MemberList {
    members: Vec<Member>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct MemberAdd {
    member: Member,
    members: Vec<Member>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct KvPair {
    key: String,
    value: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct RangeResponse {
    kvs: Vec<KvPair>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct Health {
    health: String,
}

/// An answer etcd gave with an error body (`{"error": ..., "code": 9}`), or a
/// non-2xx status; kept apart from transport errors so callers can tell "etcd said
/// no" from "nobody answered".
#[derive(Debug, thiserror::Error)]
#[error("{url}: HTTP {status}: {message}")]
pub struct Refused {
    pub url: String,
    pub status: u16,
    pub message: String,
}

fn u64_from_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    match Id::deserialize(d)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// The end of a prefix range: the prefix with its last byte incremented.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Client {
    /// A plain-http client of `base` (`http://127.0.0.1:2379`) without a user; each
    /// request times out after `timeout`, so a silent peer cannot stall a wait.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Client> {
        Client::with(base, timeout, &Access::default())
    }

    /// A client of `base` with `access` (TLS and a user when it has them).
    pub fn with(base: &str, timeout: Duration, access: &Access) -> anyhow::Result<Client> {
        let http = match &access.tls {
            Some(tls) => http::client_tls(timeout, timeout, tls)?,
            None => http::client(timeout, timeout)?,
        };
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            user: access.user.clone(),
            token: Default::default(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        match self.post_once(path, body) {
            // An expired token: authenticate again, once.
            Err(e) if self.user.is_some() && token_refused(&e) => {
                *self
                    .token
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                self.post_once(path, body)
            }
            other => other,
        }
    }

    /// The token of this client's user, authenticating when it has none.
    fn token(&self) -> anyhow::Result<Option<String>> {
        let Some((name, password)) = &self.user else {
            return Ok(None);
        };
        let mut kept = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.is_none() {
            #[derive(Deserialize)]
            struct Token {
                token: String,
            }
            let answer = self.request::<Token>(
                "/v3/auth/authenticate",
                &json!({ "name": name, "password": password }),
                None,
            );
            match answer {
                Ok(t) => *kept = Some(t.token),
                // Before the cluster turns auth on, requests need no token.
                Err(e) if message_has(&e, "authentication is not enabled") => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(kept.clone())
    }

    fn post_once<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        let token = self.token()?;
        self.request(path, body, token.as_deref())
    }

    fn request<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body).context("encoding a request")?;
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            headers.push(("Authorization", t));
        }
        let (status, text) = http::send(&self.http, "POST", &url, &headers, &body)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = value.get("error").and_then(Value::as_str);
        if !(200..300).contains(&status) || error.is_some() {
            return Err(Refused {
                url,
                status,
                message: error.map_or(text.clone(), str::to_string),
            }
            .into());
        }
        serde_json::from_value(value).with_context(|| format!("parsing {url}: {text}"))
    }

    /// `GET /health`: true only when this member sees a leader and can commit (quorum).
    /// The error is the answer when it is not healthy.
    pub fn health(&self) -> anyhow::Result<bool> {
        let url = format!("{}/health", self.base);
        let (status, text) = http::get(&self.http, &url)?;
        let h: Health = serde_json::from_str(&text).unwrap_or_default();
        if (200..300).contains(&status) && h.health == "true" {
            return Ok(true);
        }
        Err(Refused {
            url,
            status,
            message: text.trim().to_string(),
        }
        .into())
    }

    pub fn member_list(&self) -> anyhow::Result<Vec<Member>> {
        let list: MemberList = self.post("/v3/cluster/member/list", &json!({}))?;
        Ok(list.members)
    }

    /// Add a learner with these peer URLs; returns it and the full member list.
    pub fn member_add_learner(
        &self,
        peer_urls: &[String],
    ) -> anyhow::Result<(Member, Vec<Member>)> {
        let added: MemberAdd = self.post(
            "/v3/cluster/member/add",
            &json!({ "peerURLs": peer_urls, "isLearner": true }),
        )?;
        if added.member.id == 0 {
            bail!("{}: member add answered without a member id", self.base);
        }
        Ok((added.member, added.members))
    }

    pub fn member_remove(&self, id: u64) -> anyhow::Result<()> {
        let _: Value = self.post(
            "/v3/cluster/member/remove",
            &json!({ "ID": id.to_string() }),
        )?;
        Ok(())
    }

    /// The id of the member this client talks to and of the leader it knows
    /// (`/v3/maintenance/status`; 0 when it knows none).
    pub fn status(&self) -> anyhow::Result<(u64, u64)> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Header {
            #[serde(deserialize_with = "u64_from_string")]
            member_id: u64,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Status {
            header: Header,
            #[serde(deserialize_with = "u64_from_string")]
            leader: u64,
        }
        let s: Status = self.post("/v3/maintenance/status", &json!({}))?;
        Ok((s.header.member_id, s.leader))
    }

    /// This client for another endpoint (same TLS and user, a token of its own).
    pub fn at(&self, base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: Default::default(),
            ..self.clone()
        }
    }

    /// This client without its user (what any holder of a fleet certificate may ask:
    /// health, the member list).
    pub fn anonymous(&self) -> Client {
        Client {
            user: None,
            token: Default::default(),
            ..self.clone()
        }
    }

    pub fn member_promote(&self, id: u64) -> anyhow::Result<()> {
        let _: Value = self.post(
            "/v3/cluster/member/promote",
            &json!({ "ID": id.to_string() }),
        )?;
        Ok(())
    }

    /// Hand Raft leadership to member `target` (`/v3/maintenance/transfer-leadership`);
    /// asked of the leader.
    pub fn move_leader(&self, target: u64) -> anyhow::Result<()> {
        let _: Value = self.post(
            "/v3/maintenance/transfer-leadership",
            &json!({ "targetID": target.to_string() }),
        )?;
        Ok(())
    }

    pub fn put(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let _: Value = self.post(
            "/v3/kv/put",
            &json!({ "key": B64.encode(key), "value": B64.encode(value) }),
        )?;
        Ok(())
    }

    /// The value of one key, if it exists.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let resp: RangeResponse = self.post("/v3/kv/range", &json!({ "key": B64.encode(key) }))?;
        match resp.kvs.into_iter().next() {
            Some(kv) => Ok(Some(decode(&kv.value)?)),
            None => Ok(None),
        }
    }

    /// Every key and value under a prefix, in key order.
    pub fn get_prefix(&self, prefix: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let resp: RangeResponse = self.post(
            "/v3/kv/range",
            &json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
        )?;
        resp.kvs
            .into_iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(&decode(&kv.key)?).into_owned();
                Ok((key, decode(&kv.value)?))
            })
            .collect()
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        let _: Value = self.post("/v3/kv/deleterange", &json!({ "key": B64.encode(key) }))?;
        Ok(())
    }

    /// Turn on RBAC, as Pigsty does once per cluster: the `root` user (with the
    /// `root` role) gets `root_password`, then auth is enabled. Safe to repeat and to
    /// race with the other members: a `root` that authenticates means it is done.
    /// `self` must have no user (before auth is on nobody needs one).
    pub fn enable_auth(&self, root_password: &str) -> anyhow::Result<()> {
        let root = Client {
            user: Some(("root".into(), root_password.into())),
            token: Default::default(),
            ..self.clone()
        };
        if root.token()?.is_some() {
            return Ok(());
        }
        let post = |path: &str, body: Value| -> anyhow::Result<()> {
            match self.request::<Value>(path, &body, None) {
                Ok(_) => Ok(()),
                // Done before, or another member turned auth on meanwhile (the check
                // below tells).
                Err(e) if message_has(&e, "already") || message_has(&e, "user name is empty") => {
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        post(
            "/v3/auth/user/add",
            json!({ "name": "root", "password": root_password }),
        )?;
        post("/v3/auth/role/add", json!({ "name": "root" }))?;
        post(
            "/v3/auth/user/grant",
            json!({ "user": "root", "role": "root" }),
        )?;
        post("/v3/auth/enable", json!({}))?;
        // The password of a root that existed before may differ: say so plainly.
        match root.token() {
            Ok(Some(_)) => Ok(()),
            Ok(None) => bail!("{}: etcd auth is still off after enabling it", self.base),
            Err(e) => {
                Err(e.context("etcd auth is on, but root does not accept etcd_root_password"))
            }
        }
    }

    /// Ensure `user` exists with `password`, holding a role of the same name that may
    /// read and write the key prefixes `prefixes` and the single keys `keys` (needs a
    /// root client).
    pub fn ensure_user(
        &self,
        user: &str,
        password: &str,
        prefixes: &[String],
        keys: &[String],
    ) -> anyhow::Result<()> {
        let tolerate = |r: anyhow::Result<Value>| match r {
            Ok(_) => Ok(()),
            Err(e) if message_has(&e, "already exists") => Ok(()),
            Err(e) => Err(e),
        };
        tolerate(self.post("/v3/auth/role/add", &json!({ "name": user })))?;
        let ranges = prefixes
            .iter()
            .map(|p| (B64.encode(p), Some(B64.encode(prefix_end(p)))))
            .chain(keys.iter().map(|k| (B64.encode(k), None)));
        for (key, end) in ranges {
            let mut perm = json!({ "permType": "READWRITE", "key": key });
            if let Some(end) = end {
                perm["range_end"] = json!(end);
            }
            let _: Value = self.post(
                "/v3/auth/role/grant",
                &json!({ "name": user, "perm": perm }),
            )?;
        }
        match self.post::<Value>(
            "/v3/auth/user/add",
            &json!({ "name": user, "password": password }),
        ) {
            Ok(_) => {}
            Err(e) if message_has(&e, "already exists") => {
                let _: Value = self.post(
                    "/v3/auth/user/changepw",
                    &json!({ "name": user, "password": password }),
                )?;
            }
            Err(e) => return Err(e),
        }
        let _: Value = self.post(
            "/v3/auth/user/grant",
            &json!({ "user": user, "role": user }),
        )?;
        Ok(())
    }
}

/// Whether etcd refused a request for its token (expired, or none sent).
fn token_refused(err: &anyhow::Error) -> bool {
    message_has(err, "invalid auth token") || message_has(err, "user name is empty")
}

/// Whether etcd answered with an error whose message holds `text`.
fn message_has(err: &anyhow::Error, text: &str) -> bool {
    err.downcast_ref::<Refused>()
        .is_some_and(|r| r.message.contains(text))
}

fn decode(text: &str) -> anyhow::Result<Vec<u8>> {
    B64.decode(text)
        .with_context(|| format!("decoding base64 {text:?} from etcd"))
}

/// Whether an error is etcd refusing (it answered) rather than nobody answering.
pub fn answered(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Refused>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_list_with_string_ids_and_omitted_fields() {
        let text = r#"{"header":{"cluster_id":"2269241810571654427"},"members":[
            {"ID":"3106194159546543847","peerURLs":["http://127.0.9.2:2380"],"isLearner":true},
            {"ID":"4825232010898929363","name":"a","peerURLs":["http://127.0.9.1:2380"],"clientURLs":["http://127.0.9.1:2379"]}]}"#;
        let list: MemberList = serde_json::from_str(text).unwrap();
        assert_eq!(list.members[0].id, 3106194159546543847);
        assert!(list.members[0].is_learner && !list.members[0].started());
        // A static-list member not started yet: named, no client URLs.
        let waiting: MemberList = serde_json::from_str(
            r#"{"members":[{"ID":"1","name":"etcd-3","peerURLs":["http://127.0.9.3:2380"]}]}"#,
        )
        .unwrap();
        assert!(!waiting.members[0].started());
        assert_eq!(list.members[1].name, "a");
        assert!(!list.members[1].is_learner);
        let empty: MemberList = serde_json::from_str("{}").unwrap();
        assert!(empty.members.is_empty());
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/pigsty/nodes/"), b"/pigsty/nodes0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
