//! The rollout's SSH transport: russh (pure Rust) as the fleet's admin user with the
//! operator's key, accepting only the host keys a node reported to etcd (which only
//! the fleet CA's certificates can write), every connect, command and silence bounded.
//!
//! SSH carries commands and their output only: bundles and roots travel over HTTP
//! from the admin's artifact server (`crate::serve`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, client};

/// How long each part may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect, key exchange and authentication together.
    pub connect: Duration,
    /// The whole of one command.
    pub command: Duration,
    /// How long the server may say nothing, keepalive answers included, before the
    /// session is given up (a node that rebooted or fell off the network). The
    /// client asks every third of it, so a silent command is not silence.
    pub silence: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(15),
            command: Duration::from_secs(1800),
            silence: Duration::from_secs(60),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its exit status; `None` when the session ended without one (a reboot cut it).
    pub status: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Accepts the server only when its key is one of `known` (OpenSSH public key lines).
struct HostCheck {
    known: Vec<PublicKey>,
    /// What the server offered, for the error when it is refused.
    offered: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match offered {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // A host certificate would name a CA we do not run: only plain keys.
            russh::keys::PublicKeyOrCertificate::Certificate(_) => return Ok(false),
        };
        let ok = self.known.iter().any(|k| k.key_data() == key.key_data());
        if let Ok(mut o) = self.offered.lock() {
            *o = key.to_openssh().ok();
        }
        Ok(ok)
    }
}

/// An authenticated session with one node.
pub struct Session {
    rt: tokio::runtime::Runtime,
    handle: client::Handle<HostCheck>,
    timeouts: Timeouts,
    target: String,
}

/// Parse OpenSSH public key lines (`ssh-ed25519 AAAA… comment`); lines that are not
/// keys are an error naming them.
pub fn parse_host_keys(lines: &[String]) -> anyhow::Result<Vec<PublicKey>> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            PublicKey::from_openssh(l.trim())
                .with_context(|| format!("reading the host key {:?}", short(l)))
        })
        .collect()
}

fn short(line: &str) -> String {
    line.chars().take(40).collect()
}

impl Session {
    /// Connect to `addr` (`ip:port`) as `user` with the private key at `identity`,
    /// accepting only `host_keys`.
    pub fn connect(
        addr: &str,
        user: &str,
        identity: &Path,
        host_keys: &[String],
        timeouts: Timeouts,
    ) -> anyhow::Result<Session> {
        let known = parse_host_keys(host_keys)?;
        if known.is_empty() {
            bail!(
                "{addr} reported no SSH host key to etcd: it cannot be told from an impostor \
                 (has its agent run since its image carried host key reports?)"
            );
        }
        let key = russh::keys::load_secret_key(identity, None)
            .with_context(|| format!("reading the SSH key {}", identity.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("starting the SSH runtime")?;
        let offered = Arc::new(std::sync::Mutex::new(None));
        let handler = HostCheck {
            known,
            offered: offered.clone(),
        };
        let config = Arc::new(client::Config {
            // A node that goes silent (a reboot, a cut link) ends the session.
            inactivity_timeout: Some(timeouts.silence),
            keepalive_interval: Some(timeouts.silence / 3),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let target = format!("{user}@{addr}");
        let handle = rt.block_on(async {
            tokio::time::timeout(timeouts.connect, async {
                let mut handle = match client::connect(config, addr, handler).await {
                    Ok(h) => h,
                    Err(russh::Error::UnknownKey) => {
                        let got = offered.lock().ok().and_then(|o| o.clone());
                        bail!(
                            "{target}: the host key it offered ({}) is not one it reported to \
                             etcd: refused",
                            got.map_or("none".to_string(), |k| short(&k) + "…")
                        );
                    }
                    Err(e) => return Err(anyhow::Error::new(e).context(target.clone())),
                };
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .ok()
                    .flatten()
                    .flatten();
                let auth = handle
                    .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                    .await
                    .with_context(|| format!("{target}: authenticating"))?;
                if !auth.success() {
                    bail!(
                        "{target}: the key {} is refused (is it in node_admin_pk_list?)",
                        identity.display()
                    );
                }
                Ok(handle)
            })
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{target}: no SSH session within {}s",
                    timeouts.connect.as_secs()
                )
            })?
        })?;
        Ok(Session {
            rt,
            handle,
            timeouts,
            target,
        })
    }

    /// Run `command` (a shell line), feeding it `stdin`; `on_stderr` sees each chunk
    /// of its stderr as it comes (the agent's progress).
    pub fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        on_stderr: &mut dyn FnMut(&[u8]),
    ) -> anyhow::Result<Output> {
        let target = &self.target;
        self.rt.block_on(async {
            tokio::time::timeout(self.timeouts.command, async {
                let mut channel = self
                    .handle
                    .channel_open_session()
                    .await
                    .with_context(|| format!("{target}: opening a channel"))?;
                channel
                    .exec(true, command)
                    .await
                    .with_context(|| format!("{target}: running {command}"))?;
                if let Some(bytes) = stdin {
                    channel
                        .data(bytes)
                        .await
                        .with_context(|| format!("{target}: sending stdin"))?;
                }
                channel
                    .eof()
                    .await
                    .with_context(|| format!("{target}: closing stdin"))?;
                let mut out = Output {
                    status: None,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                };
                while let Some(msg) = channel.wait().await {
                    match msg {
                        ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                        ChannelMsg::ExtendedData { data, .. } => {
                            on_stderr(&data);
                            out.stderr.extend_from_slice(&data);
                        }
                        ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                        _ => {}
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{target}: `{command}` did not end within {}s",
                    self.timeouts.command.as_secs()
                )
            })?
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let handle = &self.handle;
        let _ = self.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(2),
                handle.disconnect(russh::Disconnect::ByApplication, "", "en"),
            )
            .await
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_lines_are_read_and_a_bad_one_is_named() {
        let good = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoF0rI1n9ds8rM2tUBH0zOkM3f0DkC3P6i5VfYbOqCr root@pg-test-1".to_string();
        let keys = parse_host_keys(&[good.clone(), String::new()]).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithm().as_str(), "ssh-ed25519");
        let err = parse_host_keys(&["ssh-ed25519 not-base64".to_string()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("ssh-ed25519 not-base64"),
            "{err:#}"
        );
    }
}
