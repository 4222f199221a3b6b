//! A lab VM's journal as the host keeps it: `vms/<node>/journal.json`, one JSON object
//! per entry (journalctl's `--output=json`), streamed out of the guest over a virtio
//! port by the image's pigsty-journal-export.service. It survives the VM, so a failed
//! run can be read afterwards without SSH; `pigsty lab logs NODE [UNIT]` prints it.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// One journal entry, with the fields the export unit asks for.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Entry {
    #[serde(rename = "__MONOTONIC_TIMESTAMP", default)]
    monotonic_us: String,
    #[serde(rename = "_BOOT_ID", default)]
    pub boot: String,
    #[serde(rename = "MESSAGE", default)]
    message: Option<serde_json::Value>,
    #[serde(rename = "SYSLOG_IDENTIFIER", default)]
    identifier: Option<String>,
    #[serde(rename = "_SYSTEMD_UNIT", default)]
    pub unit: Option<String>,
    #[serde(rename = "_PID", default)]
    pid: Option<String>,
}

impl Entry {
    /// The message text; journald gives non-UTF-8 messages as an array of bytes.
    pub fn message(&self) -> String {
        match &self.message {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(bytes)) => {
                let b: Vec<u8> = bytes
                    .iter()
                    .filter_map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                    .collect();
                String::from_utf8_lossy(&b).into_owned()
            }
            _ => String::new(),
        }
    }

    /// Seconds since the guest booted.
    pub fn uptime(&self) -> f64 {
        self.monotonic_us.parse::<f64>().unwrap_or(0.0) / 1e6
    }

    /// Whether the entry belongs to `unit` (`patroni` means `patroni.service`), by its
    /// systemd unit or, for entries without one, its syslog identifier.
    pub fn is_of(&self, unit: &str) -> bool {
        let with_suffix = if unit.contains('.') {
            unit.to_string()
        } else {
            format!("{unit}.service")
        };
        match &self.unit {
            Some(u) => *u == with_suffix || *u == unit,
            None => self.identifier.as_deref() == Some(unit),
        }
    }

    /// `[  12.345] patroni[612]: message`, like `journalctl -o short-monotonic`.
    pub fn line(&self) -> String {
        let who = self.identifier.as_deref().unwrap_or("?");
        let pid = self
            .pid
            .as_deref()
            .map(|p| format!("[{p}]"))
            .unwrap_or_default();
        format!("[{:>9.3}] {who}{pid}: {}", self.uptime(), self.message())
    }
}

/// Every entry of a journal file, in order. A line that does not parse (the last one
/// of a VM that was killed mid-write) is skipped.
pub fn read(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
            out.push(e);
        }
    }
    Ok(out)
}

/// The entries of `unit` (all when `None`) as text, with a marker where a boot starts.
pub fn render(entries: &[Entry], unit: Option<&str>) -> String {
    let mut out = String::new();
    let mut boot = "";
    for e in entries {
        if e.boot != boot {
            boot = &e.boot;
            out.push_str(&format!("-- boot {boot} --\n"));
        }
        if unit.is_none_or(|u| e.is_of(u)) {
            out.push_str(&e.line());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOURNAL: &str = concat!(
        r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1","__MONOTONIC_TIMESTAMP":"2500000","_BOOT_ID":"b1","MESSAGE":"Linux version 6.1","PRIORITY":"5","SYSLOG_IDENTIFIER":"kernel"}"#,
        "\n",
        r#"{"__MONOTONIC_TIMESTAMP":"61200000","_BOOT_ID":"b1","MESSAGE":"pigsty agent: step etcd: running","SYSLOG_IDENTIFIER":"pigsty","_SYSTEMD_UNIT":"pigsty-firstboot.service","_PID":"412"}"#,
        "\n",
        r#"{"__MONOTONIC_TIMESTAMP":"70000000","_BOOT_ID":"b1","MESSAGE":[104,105,255],"SYSLOG_IDENTIFIER":"patroni","_SYSTEMD_UNIT":"patroni.service","_PID":"600"}"#,
        "\n",
        r#"{"__MONOTONIC_TIMESTAMP":"1000000","_BOOT_ID":"b2","MESSAGE":"second boot","SYSLOG_IDENTIFIER":"kernel"}"#,
        "\n",
        r#"{"__MONOTONIC_TIMESTAMP":"2000000","_BOOT_ID":"b2","MESSA"#,
    );

    #[test]
    fn a_journal_file_reads_back_by_unit_and_boot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        std::fs::write(&path, JOURNAL).unwrap();
        let entries = read(&path).unwrap();
        assert_eq!(entries.len(), 4, "the torn last line is skipped");
        assert_eq!(entries[2].message(), "hi\u{fffd}");
        let all = render(&entries, None);
        assert_eq!(
            all,
            "-- boot b1 --\n[    2.500] kernel: Linux version 6.1\n\
             [   61.200] pigsty[412]: pigsty agent: step etcd: running\n\
             [   70.000] patroni[600]: hi\u{fffd}\n-- boot b2 --\n[    1.000] kernel: second boot\n"
        );
        let patroni = render(&entries, Some("patroni"));
        assert!(patroni.contains("patroni[600]") && !patroni.contains("pigsty["));
        assert!(render(&entries, Some("pigsty-firstboot.service")).contains("step etcd"));
        assert!(render(&entries, Some("kernel")).contains("second boot"));
    }
}
