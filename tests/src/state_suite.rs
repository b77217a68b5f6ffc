//! The behaviour every object-store state must show, written once and run against each store
//! (`tests/tests/state_gcs.rs`, `tests/tests/state_azure.rs`): each function is one test, given
//! a fresh bucket or container ([`Bucket`]) on a real local server, and drives the store
//! through `flotilla_state::open(url)` exactly as the binary does.

use flotilla_core::state::{LockInfo, State, StateError, StateStore, StoredVersion};
use std::future::Future;
use std::time::Duration;

/// A fresh, empty bucket (or container) of one store, on its local server.
pub trait Bucket {
    /// The state URL of `key` in this bucket (`gs://B/KEY`, `az://A/C/KEY`).
    fn url(&self, key: &str) -> String;

    /// A state URL in a bucket that does not exist.
    fn missing_url(&self) -> String;

    /// Writes `text` to `key` unconditionally, behind flotilla's back.
    fn put_raw(&self, key: &str, text: &str) -> impl Future<Output = ()>;

    /// The content of `key`, `None` when there is no such object.
    fn get_raw(&self, key: &str) -> impl Future<Output = Option<String>>;
}

/// Opens the store at `url` as the binary does; panics when the URL is refused.
pub fn open(url: &str) -> Box<dyn StateStore> {
    flotilla_state::open(url).unwrap_or_else(|e| panic!("opening {url}: {e}"))
}

/// The next state a writer makes from `state`: serial raised, lineage kept, `marker` recorded
/// as an output so that a lost update would show.
pub fn next(state: &State, marker: &str) -> State {
    let mut next = state.clone();
    next.serial += 1;
    next.outputs
        .insert(marker.to_string(), serde_json::Value::from(next.serial));
    next
}

/// Writes, reads back, writes again: serial rises, lineage stays, the previous version is kept
/// as `KEY.backup`, and a write against the old version is refused.
pub async fn round_trip(bucket: &impl Bucket) {
    let url = bucket.url("gpu/prod.json");
    let store = open(&url);
    assert_eq!(store.url(), url);
    assert!(
        store.read().await.unwrap().is_none(),
        "a new bucket has no state"
    );

    let first = next(&State::empty(), "first");
    let v1 = store.write(&first, None).await.unwrap();
    let (read, read_v1) = store.read().await.unwrap().expect("the state just written");
    assert_eq!(read, first);
    assert_eq!(read_v1, v1);

    // A second store (another process) sees the same document and version.
    let other = open(&url);
    let (seen, seen_v) = other.read().await.unwrap().unwrap();
    assert_eq!((seen, seen_v), (first.clone(), v1.clone()));

    let second = next(&first, "second");
    let v2 = store.write(&second, Some(&v1)).await.unwrap();
    assert_ne!(v1, v2, "every write makes a new version");
    let (read, _) = open(&url).read().await.unwrap().unwrap();
    assert_eq!(read.serial, 2);
    assert_eq!(read.lineage, first.lineage, "lineage is kept");
    assert_eq!(read, second);

    // The version replaced is recoverable.
    let backup = bucket
        .get_raw("gpu/prod.json.backup")
        .await
        .expect("a backup of the replaced version");
    let backup = State::from_json(&backup, "backup").unwrap();
    assert_eq!(backup, first);

    // Writing against the version that is gone loses, and changes nothing.
    let stale = next(&first, "stale");
    match other.write(&stale, Some(&v1)).await {
        Err(StateError::Conflict { url: u, .. }) => assert_eq!(u, url),
        other => panic!("a write against an old version must conflict, got {other:?}"),
    }
    // So does a first write where a state already exists.
    let fresh = next(&State::empty(), "fresh");
    assert!(matches!(
        open(&url).write(&fresh, None).await,
        Err(StateError::Conflict { .. })
    ));
    let (read, _) = open(&url).read().await.unwrap().unwrap();
    assert_eq!(read, second, "nothing was overwritten");
}

/// Sixteen writers from the same version: exactly one wins, every other gets
/// [`StateError::Conflict`]; each loser re-reads and applies its change again, and in the end
/// every change is in the state.
pub async fn concurrent_writers(bucket: &impl Bucket) {
    let url = bucket.url("race.json");
    let base = next(&State::empty(), "base");
    let v1 = open(&url).write(&base, None).await.unwrap();

    let writers: Vec<(String, Box<dyn StateStore>)> = (0..16)
        .map(|i| (format!("writer-{i:02}"), open(&url)))
        .collect();
    let results = futures::future::join_all(writers.iter().map(|(name, store)| {
        let state = next(&base, name);
        let v1 = v1.clone();
        async move { store.write(&state, Some(&v1)).await }
    }))
    .await;
    let winners: Vec<&str> = results
        .iter()
        .zip(&writers)
        .filter(|(r, _)| r.is_ok())
        .map(|(_, (name, _))| name.as_str())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {winners:?}");
    for (result, (name, _)) in results.iter().zip(&writers) {
        match result {
            Ok(_) => {}
            Err(StateError::Conflict { .. }) => {}
            Err(e) => panic!("{name} lost with the wrong error: {e}"),
        }
    }
    let (state, _) = open(&url).read().await.unwrap().unwrap();
    assert_eq!(
        state,
        next(&base, winners[0]),
        "the winner's state is stored"
    );

    // The losers retry from what is there now; nothing is lost.
    for (result, (name, store)) in results.iter().zip(&writers) {
        if result.is_ok() {
            continue;
        }
        let (current, version) = store.read().await.unwrap().unwrap();
        store
            .write(&next(&current, name), Some(&version))
            .await
            .unwrap();
    }
    let (state, _) = open(&url).read().await.unwrap().unwrap();
    assert_eq!(state.serial, base.serial + 16);
    assert_eq!(state.lineage, base.lineage);
    for (name, _) in &writers {
        assert!(state.outputs.contains_key(name), "{name}'s change was lost");
    }
}

/// Two stores on one state: the second cannot lock and is told who holds it; after the first
/// unlocks, the second can.
pub async fn two_lockers(bucket: &impl Bucket) {
    let url = bucket.url("locked.json");
    let first = open(&url);
    let second = open(&url);
    let apply = LockInfo::new("apply");
    first.lock(&apply).await.unwrap();

    let plan = LockInfo::new("plan");
    match second.lock(&plan).await {
        Err(StateError::Locked { url: u, holder }) => {
            assert_eq!(u, url);
            assert_eq!(holder.id, apply.id);
            assert_eq!(holder.operation, "apply");
            assert_eq!(holder.who, apply.who);
            assert!(!holder.is_stale(), "a live lock is not stale");
            let message = StateError::Locked {
                url: u,
                holder: holder.clone(),
            }
            .to_string();
            assert!(message.contains("locked by"), "{message}");
            assert!(message.contains(&apply.who), "{message}");
            assert!(message.contains("for apply"), "{message}");
        }
        other => panic!("the second locker must be refused, got {other:?}"),
    }

    // The holder's heartbeat renews the lock object in place.
    first.heartbeat(&apply.id).await.unwrap();
    assert!(matches!(
        second.lock(&plan).await,
        Err(StateError::Locked { .. })
    ));

    first.unlock(&apply.id).await.unwrap();
    assert!(
        bucket.get_raw("locked.json.lock").await.is_none(),
        "unlock removes the lock"
    );
    second.lock(&plan).await.unwrap();
    second.unlock(&plan.id).await.unwrap();
}

/// A holder that died leaves its lock: after its TTL it is reported stale, a wrong id removes
/// nothing, and `force_unlock` with its id frees the state.
pub async fn stale_lock(bucket: &impl Bucket) {
    let url = bucket.url("stale.json");
    let dead = LockInfo::new("apply").with_ttl(Duration::from_secs(1));
    {
        let holder = open(&url);
        holder.lock(&dead).await.unwrap();
        // Dropped without unlocking, as a killed process would.
    }
    // Heartbeat ages are whole seconds; stale means older than the 1 s TTL.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let other = open(&url);
    let mine = LockInfo::new("apply");
    match other.lock(&mine).await {
        Err(e @ StateError::Locked { .. }) => {
            let StateError::Locked { holder, .. } = &e else {
                unreachable!()
            };
            assert_eq!(holder.id, dead.id);
            assert!(holder.is_stale(), "the dead holder's lock is stale");
            let message = e.to_string();
            assert!(message.contains("stale"), "{message}");
            assert!(
                message.contains(&format!("flotilla force-unlock {}", dead.id)),
                "{message}"
            );
        }
        other => panic!("a stale lock still locks, got {other:?}"),
    }

    let wrong = "00000000-0000-0000-0000-000000000000";
    let e = other.force_unlock(wrong).await.unwrap_err().to_string();
    assert!(e.contains("nothing was removed"), "{e}");
    assert!(
        bucket.get_raw("stale.json.lock").await.is_some(),
        "a wrong id removes nothing"
    );

    other.force_unlock(&dead.id).await.unwrap();
    assert!(bucket.get_raw("stale.json.lock").await.is_none());
    other.lock(&mine).await.unwrap();
    other.unlock(&mine.id).await.unwrap();
}

/// An object that is not a flotilla state: reading says so, and writing does not replace it.
pub async fn corrupt_object(bucket: &impl Bucket) {
    let url = bucket.url("corrupt.json");
    bucket.put_raw("corrupt.json", "this is not json {").await;
    let store = open(&url);
    match store.read().await {
        Err(e @ StateError::Corrupt { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&url), "{message}");
            assert!(message.contains("not JSON"), "{message}");
        }
        other => panic!("a corrupt object must be refused, got {other:?}"),
    }
    let state = next(&State::empty(), "x");
    assert!(store.write(&state, None).await.is_err());
    assert!(
        store
            .write(&state, Some(&StoredVersion("1".to_string())))
            .await
            .is_err()
    );
    assert_eq!(
        bucket.get_raw("corrupt.json").await.as_deref(),
        Some("this is not json {"),
        "the object was left untouched"
    );

    // A document from a newer flotilla is refused the same way, naming the version.
    bucket
        .put_raw(
            "newer.json",
            r#"{"format_version": 99, "flotilla_version": "9.0.0", "lineage": "x", "serial": 1, "resources": []}"#,
        )
        .await;
    let e = open(&bucket.url("newer.json")).read().await.unwrap_err();
    assert!(
        matches!(
            e,
            StateError::TooNew {
                format_version: 99,
                ..
            }
        ),
        "{e}"
    );
}

/// A bucket that does not exist: every operation fails, saying so.
pub async fn missing_bucket(bucket: &impl Bucket) {
    let url = bucket.missing_url();
    let store = open(&url);
    let read = store.read().await.unwrap_err().to_string();
    assert!(read.contains("does not exist"), "{read}");
    let state = next(&State::empty(), "x");
    let write = store.write(&state, None).await.unwrap_err().to_string();
    assert!(write.contains("does not exist"), "{write}");
    let lock = store
        .lock(&LockInfo::new("apply"))
        .await
        .unwrap_err()
        .to_string();
    assert!(lock.contains("does not exist"), "{lock}");
}

/// Runs the real `flotilla` binary in an empty directory; (exit code, stdout, stderr).
pub fn flotilla(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(crate::bin::flotilla())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running flotilla {args:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary on this store: `state push` stores a document, `state pull` and `state list`
/// read it back, a push of another lineage is refused and changes nothing, and a push while
/// someone holds the lock names the holder and exits 1.
pub async fn cli_push_pull(bucket: &impl Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let url = bucket.url("cli/prod.json");
    let state = next(&State::empty(), "pushed");
    let file = dir.path().join("state.json");
    std::fs::write(&file, state.to_json()).unwrap();
    let file = file.display().to_string();

    let (code, _, err) = flotilla(dir.path(), &["state", "push", &file, "--state", &url]);
    assert_eq!(code, 0, "push: {err}");
    let (code, out, err) = flotilla(dir.path(), &["state", "pull", "--state", &url]);
    assert_eq!(code, 0, "pull: {err}");
    let pulled = State::from_json(&out, "pull").unwrap();
    assert_eq!(pulled.lineage, state.lineage);
    assert_eq!(pulled.outputs, state.outputs);
    assert!(pulled.serial > state.serial, "a push raises the serial");
    let (code, out, err) = flotilla(dir.path(), &["state", "list", "--state", &url]);
    assert_eq!(
        (code, out.as_str()),
        (0, ""),
        "list of an empty state: {err}"
    );

    // Another lineage: refused, nothing written.
    let foreign = dir.path().join("foreign.json");
    std::fs::write(&foreign, next(&State::empty(), "foreign").to_json()).unwrap();
    let foreign = foreign.display().to_string();
    let (code, _, err) = flotilla(dir.path(), &["state", "push", &foreign, "--state", &url]);
    assert_eq!(code, 1, "a foreign lineage must be refused: {err}");
    assert!(err.contains("another lineage"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    let (_, out, _) = flotilla(dir.path(), &["state", "pull", "--state", &url]);
    assert_eq!(State::from_json(&out, "pull").unwrap(), pulled);

    // Locked by someone else: the binary names the holder and exits 1.
    let holder = open(&url);
    let apply = LockInfo::new("apply");
    holder.lock(&apply).await.unwrap();
    let (code, _, err) = flotilla(dir.path(), &["state", "push", &file, "--state", &url]);
    assert_eq!(code, 1, "a locked state must be refused: {err}");
    assert!(err.contains("locked by"), "{err}");
    assert!(err.contains(&apply.id), "{err}");
    holder.unlock(&apply.id).await.unwrap();
    let (_, out, _) = flotilla(dir.path(), &["state", "pull", "--state", &url]);
    assert_eq!(
        State::from_json(&out, "pull").unwrap(),
        pulled,
        "nothing was written"
    );

    // A holder that died: `force-unlock` with a wrong id removes nothing, with its id frees
    // the state.
    let dead = LockInfo::new("apply").with_ttl(Duration::from_secs(1));
    open(&url).lock(&dead).await.unwrap();
    let wrong = "00000000-0000-0000-0000-000000000000";
    let (code, _, err) = flotilla(dir.path(), &["force-unlock", wrong, "--state", &url]);
    assert_eq!(code, 1, "a wrong id must be refused: {err}");
    assert!(err.contains("nothing was removed"), "{err}");
    let (code, _, err) = flotilla(dir.path(), &["state", "rm", "fleet.x[0]", "--state", &url]);
    assert_eq!(code, 1, "still locked: {err}");
    assert!(err.contains(&dead.id), "{err}");
    let (code, _, err) = flotilla(dir.path(), &["force-unlock", &dead.id, "--state", &url]);
    assert_eq!(code, 0, "force-unlock: {err}");
    let (code, _, err) = flotilla(
        dir.path(),
        &["state", "push", &file, "--state", &url, "--force"],
    );
    assert_eq!(code, 0, "push after force-unlock: {err}");
}
