//! The rollout's SSH transport (russh) against a real OpenSSH server on loopback:
//! commands, their output and exit status, stdin; the host key check (only the keys
//! a node reported are accepted); a refused client key; a command that overruns its
//! bound. Needs root (sshd's privilege separation) and openssh-server.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pigsty::rollout::ssh::{Session, Timeouts};

struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .expect("running ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

impl Sshd {
    fn start() -> Sshd {
        support::require_root("sshd drops privileges to its own user");
        support::require_tools(&["/usr/sbin/sshd", "/usr/bin/ssh-keygen"]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host"));
        let client = keygen(&d.join("client"));
        std::fs::write(d.join("authorized_keys"), format!("{client}\n")).unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = support::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAllowUsers root\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("starting sshd");
        let sshd = Sshd { child, port, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not listen within 10 s: {}",
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host.pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    fn client_key(&self) -> PathBuf {
        self.dir.path().join("client")
    }
}

fn quick() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(10),
        command: Duration::from_secs(20),
        silence: Duration::from_secs(3),
    }
}

#[test]
#[ignore = "needs root and openssh-server's sshd"]
fn commands_run_with_their_output_status_and_stdin() {
    let sshd = Sshd::start();
    let s = Session::connect(
        &sshd.addr(),
        "root",
        &sshd.client_key(),
        &[sshd.host_key()],
        quick(),
    )
    .unwrap();
    let mut seen = Vec::new();
    let out = s
        .run("echo out; echo err >&2; exit 3", None, &mut |c| {
            seen.extend_from_slice(c)
        })
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(seen, b"err\n", "stderr is handed over as it comes");
    // A second command on the same session, with stdin.
    let out = s
        .run("tr a-z A-Z", Some(b"hello rollout"), &mut |_| {})
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout_text(), "HELLO ROLLOUT");
    // A command silent for longer than the session's silence bound (3 s) is not a
    // dead server: keepalives answer in between (an agent apply says nothing for
    // minutes).
    let out = s.run("sleep 8; echo woke", None, &mut |_| {}).unwrap();
    assert_eq!((out.status, out.stdout_text().as_str()), (Some(0), "woke"));
}

#[test]
#[ignore = "needs root and openssh-server's sshd"]
fn a_host_key_the_node_did_not_report_is_refused() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().unwrap();
    let impostor = keygen(&other.path().join("other"));
    let err = Session::connect(
        &sshd.addr(),
        "root",
        &sshd.client_key(),
        &[impostor],
        quick(),
    )
    .err()
    .expect("a host key nobody reported is refused");
    let err = format!("{err:#}");
    assert!(err.contains("not one it reported"), "{err}");
    let none = Session::connect(&sshd.addr(), "root", &sshd.client_key(), &[], quick())
        .err()
        .expect("no reported key: refused before connecting");
    assert!(format!("{none:#}").contains("reported no SSH host key"));
}

#[test]
#[ignore = "needs root and openssh-server's sshd"]
fn a_client_key_the_node_does_not_list_is_refused() {
    let sshd = Sshd::start();
    let other = tempfile::tempdir().unwrap();
    keygen(&other.path().join("stranger"));
    let err = Session::connect(
        &sshd.addr(),
        "root",
        &other.path().join("stranger"),
        &[sshd.host_key()],
        quick(),
    )
    .err()
    .expect("a key not in authorized_keys is refused");
    assert!(format!("{err:#}").contains("is refused"), "{err:#}");
}

#[test]
#[ignore = "needs root and openssh-server's sshd"]
fn a_command_that_overruns_its_bound_is_an_error() {
    let sshd = Sshd::start();
    let s = Session::connect(
        &sshd.addr(),
        "root",
        &sshd.client_key(),
        &[sshd.host_key()],
        Timeouts {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(1),
            silence: Duration::from_secs(3),
        },
    )
    .unwrap();
    let err = s.run("sleep 30", None, &mut |_| {}).unwrap_err();
    assert!(
        format!("{err:#}").contains("did not end within 1s"),
        "{err:#}"
    );
}
