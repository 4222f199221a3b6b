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

/// One etcd endpoint (`http://10.10.10.11:2379`).
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: http::Client,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct Member {
    #[serde(rename = "ID", deserialize_with = "u64_from_string")]
    pub id: u64,
    /// Empty until the member has started once.
    pub name: String,
    #[serde(rename = "peerURLs")]
    pub peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub client_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub is_learner: bool,
}

impl Member {
    pub fn started(&self) -> bool {
        !self.name.is_empty()
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
    /// A client of `base` (`http://127.0.0.1:2379`); each request times out after
    /// `timeout`, so a silent peer cannot stall a wait.
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Client> {
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            http: http::client(timeout, timeout)?,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let (status, text) = http::post_json(&self.http, &url, body)?;
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

    pub fn member_promote(&self, id: u64) -> anyhow::Result<()> {
        let _: Value = self.post(
            "/v3/cluster/member/promote",
            &json!({ "ID": id.to_string() }),
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
