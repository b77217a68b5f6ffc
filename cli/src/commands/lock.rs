//! The state lock as every command takes it, and `flotilla force-unlock LOCK_ID`.
//!
//! One place decides how a command waits for a held lock (`--lock-timeout`, default 0: fail at
//! once, naming the holder; otherwise retry with backoff, saying who holds it), how long a lock
//! lives without a heartbeat (its TTL, `FLOTILLA_LOCK_TTL` to change it, which the tests use to
//! see a dead holder's lock go stale within seconds), and how a long operation keeps its lock
//! alive: a task on the runtime's worker thread renews the heartbeat while the command runs,
//! also while the main thread waits for the user's "yes".

use crate::args::ForceUnlockArgs;
use flotilla_core::state::{DEFAULT_LOCK_TTL, LockInfo, StateError, StateStore};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Overrides the lock TTL: seconds (`30`) or a duration (`30s`, `2m`).
pub(crate) const TTL_ENV: &str = "FLOTILLA_LOCK_TTL";

/// The first wait between two tries at a held lock; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Parses `--lock-timeout` and TTL values: bare seconds (`0`, `30`) or a duration (`90s`,
/// `5m`, `1h 30m`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 0, 30s, 5m or 1h"))
}

/// The TTL this process's locks carry.
pub(crate) fn ttl() -> anyhow::Result<Duration> {
    match std::env::var(TTL_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_duration(&v)
            .map_err(|e| anyhow::anyhow!("{TTL_ENV}: {e}"))
            .and_then(|d| {
                if d.is_zero() {
                    anyhow::bail!("{TTL_ENV} must be at least 1s");
                }
                Ok(d)
            }),
        _ => Ok(DEFAULT_LOCK_TTL),
    }
}

/// A runtime whose spawned tasks (the heartbeat, the executor's operations) run on a worker
/// thread, so that they go on while the main thread blocks (on the confirmation prompt).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Takes the state lock for `operation`, waiting up to `timeout` for another holder (retrying
/// with backoff and saying who holds it). Returns the lock taken.
pub(crate) async fn acquire(
    store: &dyn StateStore,
    operation: &str,
    timeout: Duration,
) -> anyhow::Result<LockInfo> {
    let info = LockInfo::new(operation).with_ttl(ttl()?);
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut told: Option<String> = None;
    loop {
        match store.lock(&info).await {
            Ok(()) => {
                if told.is_some() {
                    crate::printer::info(&format!(
                        "Acquired the state lock after {} s.",
                        start.elapsed().as_secs()
                    ));
                }
                return Ok(info);
            }
            Err(StateError::Locked { url, holder }) => {
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    if told.is_some() {
                        anyhow::bail!(
                            "gave up waiting for the state lock after {}: state `{url}` {}; {}",
                            humantime::format_duration(timeout),
                            holder.describe(),
                            holder.advice()
                        );
                    }
                    return Err(StateError::Locked { url, holder }.into());
                }
                if told.as_deref() != Some(holder.id.as_str()) {
                    crate::printer::info(&format!(
                        "state `{url}` {}; waiting up to {} for it (lock id {})…",
                        holder.describe(),
                        humantime::format_duration(timeout),
                        holder.id
                    ));
                    if holder.is_stale() {
                        crate::printer::info(&holder.advice());
                    }
                    told = Some(holder.id.clone());
                }
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Renews a held lock's heartbeat until dropped.
pub(crate) struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing `lock` in `store` every [`LockInfo::heartbeat_interval`]. A renewal
    /// that fails is reported on stderr (once per distinct failure) and tried again next time;
    /// the state writes stay safe whatever happens to the lock, each being a compare-and-swap.
    pub(crate) fn start(
        rt: &tokio::runtime::Runtime,
        store: Arc<dyn StateStore>,
        lock: &LockInfo,
    ) -> Heartbeat {
        let id = lock.id.clone();
        let every = lock.heartbeat_interval();
        let task = rt.spawn(async move {
            let mut last_failure = String::new();
            loop {
                tokio::time::sleep(every).await;
                match store.heartbeat(&id).await {
                    Ok(()) => last_failure.clear(),
                    Err(e) => {
                        let message = e.to_string();
                        if message != last_failure {
                            crate::printer::info(&format!("warning: {message}"));
                            last_failure = message;
                        }
                    }
                }
            }
        });
        Heartbeat { task }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `flotilla force-unlock LOCK_ID`: removes the lock with that id, and only that one.
pub(crate) fn run_force_unlock(args: &ForceUnlockArgs) -> anyhow::Result<ExitCode> {
    let url = super::state::resolve_url(&args.location)?;
    let store = flotilla_state::open(&url)?;
    let rt = super::plan::runtime()?;
    rt.block_on(store.force_unlock(&args.lock_id))?;
    crate::printer::info(&format!(
        "Removed lock {} from state `{url}`: the state is unlocked.",
        args.lock_id
    ));
    Ok(ExitCode::SUCCESS)
}
