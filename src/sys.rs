//! The one wrapper for running external tools: the full command is logged at debug
//! level, stdin is null, the exit status is checked, and a failure carries the tail
//! of stderr. A missing tool names the Debian package that provides it.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

/// Debian packages that provide the tools we call, for "not found" messages.
const PROVIDERS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("dumpe2fs", "e2fsprogs"),
    ("strip", "binutils"),
    ("qemu-img", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("mksquashfs", "squashfs-tools"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("xorriso", "xorriso"),
    ("systemctl", "systemd"),
    ("ip", "iproute2"),
    ("psql", "postgresql-client-15"),
    ("pgbackrest", "pgbackrest"),
    ("patroni", "patroni"),
    ("etcd", "etcd-server"),
];

#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("`{tool}` not found: install it with `apt-get install {package}`")]
    Missing { tool: String, package: String },
    #[error("running `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr_tail}")]
    Failed {
        command: String,
        status: String,
        stderr_tail: String,
    },
}

/// A command line as shown in logs and errors.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(shell_word));
    parts.join(" ")
}

fn shell_word(a: &OsStr) -> String {
    let s = a.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether `tool` is on PATH (or is an existing path).
pub fn has_tool(tool: &str) -> bool {
    which(tool).is_some()
}

/// Where `tool` is: PATH, then /usr/sbin and /sbin.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    if tool.contains('/') {
        let p = std::path::PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Fail with one clear line when a tool is missing.
pub fn require(tool: &str) -> Result<(), CmdError> {
    if has_tool(tool) {
        return Ok(());
    }
    let package = PROVIDERS
        .iter()
        .find(|(t, _)| *t == tool)
        .map_or(tool, |(_, p)| p)
        .to_string();
    Err(CmdError::Missing {
        tool: tool.to_string(),
        package,
    })
}

/// Run to completion with stdin null; stdout and stderr are captured.
pub fn run(cmd: &mut Command) -> Result<Output, CmdError> {
    run_checked(cmd)
}

/// Run and return stdout as text.
pub fn run_stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let out = run(cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the command ran and exited 0 (a probe: failures are logged, not raised).
pub fn succeeds(cmd: &mut Command) -> bool {
    match run_checked(cmd) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("{e}");
            false
        }
    }
}

/// The command line as shown in logs and errors.
pub fn describe(cmd: &Command) -> String {
    display(cmd)
}

fn run_checked(cmd: &mut Command) -> Result<Output, CmdError> {
    let shown = display(cmd);
    require(&cmd.get_program().to_string_lossy())?;
    tracing::debug!(command = %shown, "running");
    let output = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| CmdError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(output);
    }
    Err(CmdError::Failed {
        command: shown,
        status: output.status.to_string(),
        stderr_tail: tail(&output.stderr, 20),
    })
}

/// The last `lines` lines of a tool's output, for error messages.
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An exclusive lock on `path` (created when missing), held until the file is
/// dropped: two builds of one cache entry at once (two `build-image` runs, or the
/// lab beside the image tests) build it once, the second waiting and then finding it
/// made. The wait is bounded by `limit`, polled every second.
pub fn lock_exclusive(
    path: &std::path::Path,
    what: &str,
    limit: std::time::Duration,
) -> anyhow::Result<std::fs::File> {
    use anyhow::Context;
    use rustix::fs::{FlockOperation, flock};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(f),
            Err(rustix::io::Errno::WOULDBLOCK) if start.elapsed() < limit => {
                if !said {
                    tracing::info!(lock = %path.display(), "waiting for another build of {what}");
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => anyhow::bail!(
                "another build of {what} held {} for over {} s",
                path.display(),
                limit.as_secs()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_waits_bounded_then_gets_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.lock");
        let first = lock_exclusive(&path, "x", std::time::Duration::from_secs(5)).unwrap();
        let err = lock_exclusive(&path, "x", std::time::Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("another build of x"), "{err}");
        drop(first);
        lock_exclusive(&path, "x", std::time::Duration::ZERO).unwrap();
    }

    #[test]
    fn failure_carries_stderr_tail() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("boom") && msg.contains("exit status: 3"),
            "{msg}"
        );
    }

    #[test]
    fn missing_tool_names_its_package() {
        let err = require("mksquashfs-does-not-exist").unwrap_err();
        assert!(err.to_string().contains("apt-get install"), "{err}");
        let mut cmd = Command::new("definitely-not-a-tool");
        assert!(matches!(run(&mut cmd), Err(CmdError::Missing { .. })));
        assert!(!succeeds(&mut Command::new("false")));
        assert_eq!(run_stdout(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }

    #[test]
    fn display_quotes_what_needs_it() {
        let mut cmd = Command::new("echo");
        cmd.args(["a b", "c", "it's"]);
        assert_eq!(display(&cmd), r"echo 'a b' c 'it'\''s'");
    }
}
