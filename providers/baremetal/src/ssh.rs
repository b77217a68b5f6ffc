//! One SSH session to one host, through russh: connect (directly or through a `proxy_jump`
//! host), verify the host key, authenticate with an identity file or ssh-agent, run commands.
//!
//! Host keys are never accepted blindly: every connection checks the key the server shows
//! against [`KnownHosts`], which holds the fingerprints recorded in state (and, within one
//! run, those first seen by the probe). A key seen for the first time is trusted and pinned
//! (trust on first use); a different key later is refused with both fingerprints.

use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, client};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How long a TCP connect plus SSH handshake may take before the host counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to a host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// No TCP connection or no SSH handshake.
    #[error("host `{host}` ({target}) is unreachable: {reason}")]
    Unreachable {
        /// The host's name.
        host: String,
        /// `address:port`.
        target: String,
        /// What failed.
        reason: String,
    },
    /// The server's host key differs from the one recorded.
    #[error(
        "host `{host}`: the host key changed: state records {expected}, the server now shows {got}; \
         refusing to connect. If the host was really reinstalled, remove its node from state \
         (`flotilla state rm ADDR`, if it holds one) and its entry under `hosts` in the state \
         (`flotilla state pull`, edit, `flotilla state push`); otherwise someone may be \
         intercepting the connection"
    )]
    HostKeyChanged {
        /// The host's name.
        host: String,
        /// The recorded fingerprint.
        expected: String,
        /// The fingerprint the server showed.
        got: String,
    },
    /// The server refused every key offered.
    #[error(
        "host `{host}`: authentication failed for user `{user}` with {method}; check `user` and \
         `identity_file` in host `{host}`, or add the key to ssh-agent"
    )]
    Auth {
        /// The host's name.
        host: String,
        /// The login user.
        user: String,
        /// What was offered: `identity file ~/.ssh/id_ed25519`, `ssh-agent (2 keys)`.
        method: String,
    },
    /// The identity file could not be read or decoded.
    #[error("host `{host}`: cannot use identity file `{path}`: {reason}")]
    Key {
        /// The host's name.
        host: String,
        /// The path as resolved.
        path: String,
        /// Why.
        reason: String,
    },
    /// The session broke after it was set up.
    #[error("host `{host}`: SSH session failed: {reason}")]
    Session {
        /// The host's name.
        host: String,
        /// Why.
        reason: String,
    },
}

/// Host-key fingerprints (`SHA256:…`) by host name: the ones recorded in state, and those
/// pinned on first contact during this run. Cloning shares the map.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts(Arc<Mutex<BTreeMap<String, String>>>);

impl KnownHosts {
    /// The process-wide map: the plan-time probe and the provider the executor uses are built
    /// apart, and must agree on what was first seen.
    pub fn global() -> KnownHosts {
        static GLOBAL: OnceLock<KnownHosts> = OnceLock::new();
        GLOBAL.get_or_init(KnownHosts::default).clone()
    }

    /// Records `fingerprint` for `host` unless one is already known (state's record wins).
    pub fn remember(&self, host: &str, fingerprint: &str) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(host.to_string())
            .or_insert_with(|| fingerprint.to_string());
    }

    /// The fingerprint known for `host`.
    pub fn get(&self, host: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(host)
            .cloned()
    }
}

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct Target {
    /// The host's name (for messages and [`KnownHosts`]).
    pub name: String,
    /// Hostname or IP.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Private key; `None` is ssh-agent, then the default `~/.ssh/id_*` keys.
    pub identity_file: Option<PathBuf>,
    /// The jump host to tunnel through.
    pub jump: Option<Box<Target>>,
}

impl Target {
    /// `address:port`.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

/// Parses a `proxy_jump` value, `[user@]host[:port]`, into a target that logs in as `user`
/// (the host's own user when the value names none) with the same keys.
pub fn parse_jump(value: &str, user: &str, identity_file: Option<&Path>) -> Target {
    let (jump_user, rest) = match value.rsplit_once('@') {
        Some((u, r)) => (u.to_string(), r),
        None => (user.to_string(), value),
    };
    let (address, port) = match rest.rsplit_once(':') {
        Some((a, p)) if p.parse::<u16>().is_ok() => (a.to_string(), p.parse().unwrap_or(22)),
        _ => (rest.to_string(), 22),
    };
    Target {
        name: format!("proxy_jump {address}:{port}"),
        address,
        port,
        user: jump_user,
        identity_file: identity_file.map(Path::to_path_buf),
        jump: None,
    }
}

/// The `SHA256:…` fingerprint OpenSSH prints for a key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks the server's key against what is known, and keeps what it saw.
struct Verifier {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fp = fingerprint(&server_public_key.public_key());
        let ok = self.expected.as_ref().is_none_or(|e| *e == fp);
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fp);
        Ok(ok)
    }
}

/// The result of one command.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit status; `None` when the server sent none (killed by a signal).
    pub status: Option<u32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// An authenticated session.
pub struct Session {
    name: String,
    handle: client::Handle<Verifier>,
    /// The session to the jump host, kept open while its tunnel is in use.
    _jump: Option<Box<Session>>,
    /// The fingerprint the server showed.
    pub fingerprint: String,
    /// Whether this was the first contact (no key was known: trust on first use).
    pub first_contact: bool,
}

impl Session {
    /// Connects, verifies the host key against `known` (pinning it on first contact), and
    /// authenticates.
    pub async fn connect(target: &Target, known: &KnownHosts) -> Result<Session, SshError> {
        let jump = match &target.jump {
            Some(j) => Some(Box::pin(Session::connect(j, known)).await?),
            None => None,
        };
        let config = Arc::new(client::Config {
            // Keep long setup commands alive without a hard inactivity limit.
            keepalive_interval: Some(Duration::from_secs(15)),
            ..client::Config::default()
        });
        let expected = known.get(&target.name);
        let seen = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            expected: expected.clone(),
            seen: seen.clone(),
        };
        let unreachable = |reason: String| SshError::Unreachable {
            host: target.name.clone(),
            target: target.endpoint(),
            reason,
        };
        let connecting = async {
            match &jump {
                Some(j) => {
                    let channel = j
                        .handle
                        .channel_open_direct_tcpip(
                            target.address.clone(),
                            u32::from(target.port),
                            "127.0.0.1",
                            0,
                        )
                        .await?;
                    client::connect_stream(config, channel.into_stream(), verifier).await
                }
                None => {
                    client::connect(config, (target.address.as_str(), target.port), verifier).await
                }
            }
        };
        let result = tokio::time::timeout(CONNECT_TIMEOUT, connecting).await;
        let got = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut handle = match result {
            Err(_) => {
                return Err(unreachable(format!(
                    "no SSH handshake within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                if let (Some(expected), Some(got)) = (&expected, &got)
                    && expected != got
                {
                    return Err(SshError::HostKeyChanged {
                        host: target.name.clone(),
                        expected: expected.clone(),
                        got: got.clone(),
                    });
                }
                return Err(unreachable(e.to_string()));
            }
            Ok(Ok(h)) => h,
        };
        let fingerprint = got.unwrap_or_default();
        authenticate(&mut handle, target).await?;
        known.remember(&target.name, &fingerprint);
        Ok(Session {
            name: target.name.clone(),
            handle,
            _jump: jump.map(Box::new),
            fingerprint,
            first_contact: expected.is_none(),
        })
    }

    /// Runs one command (through the login user's shell) and collects its output.
    pub async fn exec(&self, command: &str) -> Result<Output, SshError> {
        let broken = |e: russh::Error| SshError::Session {
            host: self.name.clone(),
            reason: e.to_string(),
        };
        let mut channel = self.handle.channel_open_session().await.map_err(broken)?;
        channel.exec(true, command).await.map_err(broken)?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut status = None;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Says goodbye; errors are of no interest at that point.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// `~/x` to `$HOME/x`.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

async fn authenticate(
    handle: &mut client::Handle<Verifier>,
    target: &Target,
) -> Result<(), SshError> {
    let session_err = |e: russh::Error| SshError::Session {
        host: target.name.clone(),
        reason: e.to_string(),
    };
    let auth_failed = |method: String| SshError::Auth {
        host: target.name.clone(),
        user: target.user.clone(),
        method,
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(session_err)?
        .flatten();
    if let Some(path) = &target.identity_file {
        let key = russh::keys::load_secret_key(path, None).map_err(|e| SshError::Key {
            host: target.name.clone(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        if offer_key(handle, target, key, rsa_hash).await? {
            return Ok(());
        }
        return Err(auth_failed(format!("identity file {}", path.display())));
    }
    let mut tried = Vec::new();
    if std::env::var_os("SSH_AUTH_SOCK").is_some()
        && let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await
    {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in &identities {
            let key = identity.public_key().into_owned();
            let ok = handle
                .authenticate_publickey_with(target.user.clone(), key, rsa_hash, &mut agent)
                .await
                .is_ok_and(|r| r.success());
            if ok {
                return Ok(());
            }
        }
        tried.push(format!("ssh-agent ({} keys)", identities.len()));
    }
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let path = expand_home(&format!("~/.ssh/{name}"));
        let Ok(key) = russh::keys::load_secret_key(&path, None) else {
            continue;
        };
        if offer_key(handle, target, key, rsa_hash).await? {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }
    if tried.is_empty() {
        return Err(auth_failed(
            "no key: no identity_file, no ssh-agent (SSH_AUTH_SOCK) and no ~/.ssh/id_* key"
                .to_string(),
        ));
    }
    Err(auth_failed(tried.join(", ")))
}

/// Offers one private key; whether the server took it.
async fn offer_key(
    handle: &mut client::Handle<Verifier>,
    target: &Target,
    key: russh::keys::PrivateKey,
    rsa_hash: Option<HashAlg>,
) -> Result<bool, SshError> {
    let result = handle
        .authenticate_publickey(
            target.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash),
        )
        .await
        .map_err(|e| SshError::Session {
            host: target.name.clone(),
            reason: e.to_string(),
        })?;
    Ok(result.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_jump_values_parse_like_ssh_config() {
        let t = parse_jump("ops@bastion.example.com:2222", "root", None);
        assert_eq!(
            (t.user.as_str(), t.address.as_str(), t.port),
            ("ops", "bastion.example.com", 2222)
        );
        let t = parse_jump("bastion", "ubuntu", Some(Path::new("/k")));
        assert_eq!(
            (t.user.as_str(), t.address.as_str(), t.port),
            ("ubuntu", "bastion", 22)
        );
        assert_eq!(t.identity_file.as_deref(), Some(Path::new("/k")));
    }

    #[test]
    fn first_seen_keys_do_not_replace_recorded_ones() {
        let known = KnownHosts::default();
        known.remember("dgx", "SHA256:recorded");
        known.remember("dgx", "SHA256:other");
        assert_eq!(known.get("dgx").as_deref(), Some("SHA256:recorded"));
        assert_eq!(known.get("nope"), None);
    }
}
