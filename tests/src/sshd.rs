//! Real OpenSSH servers standing in for bare-metal hosts.
//!
//! Each [`SshHost`] is its own `sshd` on 127.0.0.1 and a free port, with its own host key and
//! scratch directory. Its sessions get, through sshd's `SetEnv`, a `PATH` that starts with a
//! directory holding an `nvidia-smi` stub reporting the host's GPUs, and
//! `FLOTILLA_CLAIM_DIR` pointing into that directory, so that several hosts on one machine keep
//! separate claim files while every command really runs over SSH. A test owns its hosts (it
//! can stop one, or give it a new host key) and they stop when dropped.
//!
//! `scripts/test` installs OpenSSH's server; `FLOTILLA_TEST_SSHD` names the binary (default
//! `/usr/sbin/sshd`). A missing sshd fails the test and says to run `scripts/test`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The GPUs a host's `nvidia-smi` stub reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpus {
    /// 8x `NVIDIA A100-SXM4-80GB`, 81920 MiB.
    A100x8,
    /// 8x `NVIDIA H100 80GB HBM3`, 81559 MiB.
    H100x8,
    /// No `nvidia-smi` at all.
    None,
}

impl Gpus {
    fn lines(self) -> Option<String> {
        let (name, mib) = match self {
            Gpus::A100x8 => ("NVIDIA A100-SXM4-80GB", 81920),
            Gpus::H100x8 => ("NVIDIA H100 80GB HBM3", 81559),
            Gpus::None => return None,
        };
        Some(
            (0..8)
                .map(|i| {
                    format!(
                        "{name}, {mib}, GPU-00000000-0000-0000-0000-00000000000{i}, 550.54.15\n"
                    )
                })
                .collect(),
        )
    }
}

/// The sshd binary.
pub fn sshd() -> PathBuf {
    let path = std::env::var_os("FLOTILLA_TEST_SSHD")
        .map_or_else(|| PathBuf::from("/usr/sbin/sshd"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} does not exist: the bare-metal tests need OpenSSH's sshd; run them through \
         `scripts/test`, which installs it",
        path.display()
    );
    path
}

/// A client key pair (ed25519, no passphrase) made with `ssh-keygen`.
pub struct ClientKey {
    /// The private key file.
    pub private: PathBuf,
    /// The public key line.
    pub public: String,
}

impl ClientKey {
    /// A new key in `dir` named `name`.
    pub fn new(dir: &Path, name: &str) -> ClientKey {
        let private = dir.join(name);
        keygen(&private);
        let public = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
        ClientKey {
            private,
            public: public.trim().to_string(),
        }
    }
}

fn keygen(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "flotilla-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen (OpenSSH's client tools)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// One sshd standing in for a bare-metal host.
pub struct SshHost {
    /// The host's name in fleet files.
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SshHost {
    /// Starts a host whose root login accepts `key` and whose GPUs are `gpus`.
    pub fn start(name: &str, gpus: Gpus, key: &ClientKey) -> SshHost {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::fs::create_dir_all(dir.path().join("claims")).expect("claims dir");
        if let Some(lines) = gpus.lines() {
            let stub = bin.join("nvidia-smi");
            std::fs::write(&stub, format!("#!/bin/sh\ncat <<'EOF'\n{lines}EOF\n"))
                .expect("nvidia-smi stub");
            set_executable(&stub);
        }
        keygen(&dir.path().join("host_ed25519"));
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("{}\n", key.public),
        )
        .expect("authorized_keys");
        // Privilege separation wants this directory; it is shared and harmless.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut host = SshHost {
            name: name.to_string(),
            port: 0,
            dir,
            child: None,
        };
        host.run(free_port());
        host
    }

    /// The host's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&mut self, port: u16) {
        let d = self.dir.path().display().to_string();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             SetEnv FLOTILLA_CLAIM_DIR={d}/claims PATH={d}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        );
        let config_path = self.dir.path().join("sshd_config");
        std::fs::write(&config_path, config).expect("sshd_config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sshd.log"))
            .expect("sshd log");
        let child = Command::new(sshd())
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        self.port = port;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd for host {} did not listen on port {port}: {}",
                self.name,
                std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops its sshd: the host goes down.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts its sshd again after [`SshHost::stop`], on the same port and with the same key.
    pub fn start_again(&mut self) {
        self.stop();
        self.run(self.port);
    }

    /// Gives the host a new host key and restarts it on the same port.
    pub fn new_host_key(&mut self) {
        self.stop();
        keygen(&self.dir.path().join("host_ed25519"));
        self.run(self.port);
    }

    /// The claim file on the host, if there is one.
    pub fn claim(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("claims/claim.json")).ok()?;
        Some(serde_json::from_str(&text).expect("claim JSON"))
    }

    /// The host key's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(self.dir.path().join("host_ed25519.pub"))
            .output()
            .expect("ssh-keygen -l");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// Its `host "NAME" { … }` block, with `extra` attributes inside.
    pub fn hcl(&self, extra: &str) -> String {
        format!(
            "  host \"{}\" {{\n    address = \"127.0.0.1\"\n    port    = {}\n{extra}  }}\n",
            self.name, self.port
        )
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path).expect("stat").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// The hosts `scripts/test` started (`FLOTILLA_TEST_SSH_HOSTS`, `name=port` pairs) and the
/// client key they accept (`FLOTILLA_TEST_SSH_KEY`). Shared by every test of a run, so only
/// for tests that claim nothing. Panics, saying to run `scripts/test`, when they are not set.
pub fn script_hosts() -> (Vec<(String, u16)>, PathBuf) {
    let (Ok(hosts), Ok(key)) = (
        std::env::var("FLOTILLA_TEST_SSH_HOSTS"),
        std::env::var("FLOTILLA_TEST_SSH_KEY"),
    ) else {
        panic!(
            "FLOTILLA_TEST_SSH_HOSTS and FLOTILLA_TEST_SSH_KEY are not set: run the tests through \
             `scripts/test`, which starts the sshd hosts"
        );
    };
    let hosts = hosts
        .split(',')
        .filter_map(|pair| {
            let (name, port) = pair.split_once('=')?;
            Some((name.to_string(), port.parse().ok()?))
        })
        .collect();
    (hosts, PathBuf::from(key))
}
