//! The one bounded wait of the agent: every poll, retry and "until healthy" loop goes
//! through [`Policy::wait`], so every wait has a deadline, a maximum number of
//! attempts and a backoff, and a timeout says which step waited for which peer and
//! what that peer answered last.

use std::time::{Duration, Instant};

/// How long and how often to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Give up after this long, counted from the first attempt.
    pub deadline: Duration,
    /// Give up after this many attempts.
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubled after each one, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            deadline: Duration::from_secs(600),
            max_attempts: 100_000,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// What one attempt found.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Done: stop waiting.
    Ready(T),
    /// Not yet; the text is what the peer answered (kept for the timeout error).
    NotYet(String),
    /// Waiting cannot help (wrong credentials, a refused request): stop now.
    Fatal(anyhow::Error),
}

/// A wait that ran out. Names the step, the peer, and the last answer seen.
#[derive(Debug, thiserror::Error)]
#[error(
    "step {step}: timed out after {:.1}s and {attempts} attempt(s) waiting for {what} at {peer}; last answer: {last}",
    elapsed.as_secs_f64()
)]
pub struct Timeout {
    pub step: String,
    pub peer: String,
    pub what: String,
    pub last: String,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Errors of [`Policy::wait`]: a timeout, or an attempt that said waiting cannot help.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Timeout(#[from] Timeout),
    #[error("step {step}: {what} at {peer}: {source:#}")]
    Fatal {
        step: String,
        peer: String,
        what: String,
        source: anyhow::Error,
    },
}

impl Policy {
    /// A policy with this deadline and the default backoff.
    pub fn with_deadline(deadline: Duration) -> Policy {
        Policy {
            deadline,
            ..Policy::default()
        }
    }

    /// Call `attempt` until it is ready, fatal, or the deadline or attempt count runs
    /// out. `step`, `what` and `peer` name the wait in logs and errors.
    pub fn wait<T>(
        &self,
        step: &str,
        what: &str,
        peer: &str,
        mut attempt: impl FnMut() -> Attempt<T>,
    ) -> Result<T, WaitError> {
        let start = Instant::now();
        let mut pause = self.backoff;
        let mut last = String::from("(no answer yet)");
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt() {
                Attempt::Ready(v) => return Ok(v),
                Attempt::Fatal(source) => {
                    return Err(WaitError::Fatal {
                        step: step.into(),
                        peer: peer.into(),
                        what: what.into(),
                        source,
                    });
                }
                Attempt::NotYet(answer) => {
                    if answer != last {
                        tracing::info!(step, peer, "waiting for {what}: {answer}");
                    }
                    last = answer;
                }
            }
            let elapsed = start.elapsed();
            if attempts >= self.max_attempts || elapsed + pause > self.deadline {
                return Err(Timeout {
                    step: step.into(),
                    peer: peer.into(),
                    what: what.into(),
                    last,
                    attempts,
                    elapsed,
                }
                .into());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(self.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max_attempts: u32) -> Policy {
        Policy {
            deadline: Duration::from_secs(5),
            max_attempts,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    #[test]
    fn ready_after_retries() {
        let mut n = 0;
        let v = quick(10)
            .wait("etcd", "health", "peer", || {
                n += 1;
                if n < 3 {
                    Attempt::NotYet(format!("try {n}"))
                } else {
                    Attempt::Ready(n)
                }
            })
            .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn timeout_names_step_peer_and_last_answer() {
        let err = quick(4)
            .wait::<()>("patroni", "/primary 200", "http://127.0.0.1:8008", || {
                Attempt::NotYet("503 replica".into())
            })
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("step patroni"), "{msg}");
        assert!(msg.contains("http://127.0.0.1:8008"), "{msg}");
        assert!(msg.contains("last answer: 503 replica"), "{msg}");
        assert!(msg.contains("4 attempt(s)"), "{msg}");
    }

    #[test]
    fn deadline_bounds_the_wait() {
        let p = Policy {
            deadline: Duration::from_millis(50),
            max_attempts: u32::MAX,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        };
        let start = Instant::now();
        let err = p.wait::<()>("s", "w", "p", || Attempt::NotYet("no".into()));
        assert!(matches!(err, Err(WaitError::Timeout(_))));
        assert!(start.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn fatal_stops_at_once() {
        let mut n = 0;
        let err = quick(100).wait::<()>("minio", "bucket", "p", || {
            n += 1;
            Attempt::Fatal(anyhow::anyhow!("403 InvalidAccessKeyId"))
        });
        assert_eq!(n, 1);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("403 InvalidAccessKeyId")
        );
    }
}
