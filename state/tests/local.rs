//! The local-file state store, through the `StateStore` port: missing, round trip, backup,
//! compare-and-swap, refusal of corrupt documents, and the OS lock against a real second
//! process (this test binary re-executed as a lock holder).

use flotilla_core::catalog::ProviderKind;
use flotilla_core::state::{
    LockInfo, Resource, ResourceKind, State, StateError, StateStore, StoredVersion,
};
use flotilla_state::LocalStore;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Set in the re-executed test binary: the state path whose lock the helper takes and holds.
const HOLD_ENV: &str = "FLOTILLA_STATE_TEST_HOLD_LOCK";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime")
        .block_on(f)
}

fn state_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("flotilla.state.json")
}

/// A state with one instance, at `serial`.
fn sample(serial: u64) -> State {
    let mut state = State::empty();
    state.serial = serial;
    state.resources.push(Resource {
        address: "fleet.train[0]".to_string(),
        kind: ResourceKind::Instance,
        provider: ProviderKind::Aws,
        provider_id: format!("i-{serial:04}"),
        region: "us-east-1".to_string(),
        zone: "us-east-1a".to_string(),
        offer: None,
        attributes: Default::default(),
        dependencies: vec![],
    });
    state
        .outputs
        .insert("serial".to_string(), serde_json::json!(serial));
    state
}

/// Every file in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn missing_file_reads_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state_path(&dir));
    assert!(block_on(store.read()).unwrap().is_none());
    // Reading creates nothing.
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn write_then_read_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    let state = sample(1);
    let written = block_on(store.write(&state, None)).unwrap();
    let (read, version) = block_on(store.read()).unwrap().unwrap();
    assert_eq!(read, state);
    assert_eq!(version, written);
    assert!(version.0.starts_with("1:"), "{version:?}");
    // Exactly the document it was given, as `State::to_json` renders it.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), state.to_json());
    // A second store on the same path sees the same version.
    let (_, again) = block_on(LocalStore::new(&path).read()).unwrap().unwrap();
    assert_eq!(again, written);
}

#[test]
fn write_keeps_one_backup_of_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    let mut version = block_on(store.write(&sample(1), None)).unwrap();
    assert!(
        !store.backup_path().exists(),
        "no backup before there is a previous version"
    );
    for serial in 2..=4 {
        let previous = std::fs::read(&path).unwrap();
        version = block_on(store.write(&sample(serial), Some(&version))).unwrap();
        assert_eq!(std::fs::read(store.backup_path()).unwrap(), previous);
    }
    assert_eq!(
        listing(dir.path()),
        vec![
            "flotilla.state.json",
            "flotilla.state.json.backup",
            "flotilla.state.json.lock"
        ]
    );
    let backup = std::fs::read_to_string(store.backup_path()).unwrap();
    assert_eq!(State::from_json(&backup, "backup").unwrap().serial, 3);
}

#[test]
fn cas_conflict_when_file_changed_since_read_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    block_on(store.write(&sample(1), None)).unwrap();
    let (_, version) = block_on(store.read()).unwrap().unwrap();

    // Another writer (another process, a person with an editor) replaces the file.
    let theirs = sample(2).to_json();
    std::fs::write(&path, &theirs).unwrap();
    let backup_before = std::fs::read(store.backup_path()).ok();

    let err = block_on(store.write(&sample(2), Some(&version))).unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("changed by someone else"), "{message}");
    assert!(message.contains(&version.0), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
    assert_eq!(std::fs::read(store.backup_path()).ok(), backup_before);
}

#[test]
fn cas_conflict_when_file_was_deleted_since_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    let version = block_on(store.write(&sample(1), None)).unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = block_on(store.write(&sample(2), Some(&version))).unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err:?}");
    assert!(!path.exists());
}

#[test]
fn expected_none_with_existing_file_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    block_on(store.write(&sample(1), None)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = block_on(store.write(&sample(1), None)).unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("there was no state when it was read")
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_made_up_version_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state_path(&dir));
    block_on(store.write(&sample(1), None)).unwrap();
    let forged = StoredVersion("1:0000".to_string());
    let err = block_on(store.write(&sample(2), Some(&forged))).unwrap_err();
    assert!(matches!(err, StateError::Conflict { .. }), "{err:?}");
}

#[test]
fn corrupt_foreign_and_newer_files_are_refused_and_left_byte_identical() {
    let newer = r#"{"format_version": 99, "flotilla_version": "9.0.0", "lineage": "x", "serial": 3, "resources": []}"#;
    let cases: [(&str, &[u8], &str); 5] = [
        ("not json", b"{ this is not json", "not JSON"),
        ("not utf-8", b"\xff\xfe\x00garbage", "not UTF-8"),
        (
            "no format_version",
            br#"{"version": 4, "terraform_version": "1.9.0"}"#,
            "not a flotilla state file",
        ),
        ("format_version 99", newer.as_bytes(), "Upgrade flotilla"),
        (
            "format_version 0",
            br#"{"format_version": 0}"#,
            "unknown format_version 0",
        ),
    ];
    for (name, bytes, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = state_path(&dir);
        std::fs::write(&path, bytes).unwrap();
        let store = LocalStore::new(&path);

        let err = block_on(store.read()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            message.contains(&path.display().to_string()),
            "{name}: {message}"
        );
        if name == "format_version 99" {
            assert!(
                matches!(
                    err,
                    StateError::TooNew {
                        format_version: 99,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(message.contains("9.0.0"), "{message}");
        } else {
            assert!(matches!(err, StateError::Corrupt { .. }), "{name}: {err:?}");
        }

        // A write cannot replace it either: there is no version it could be conditional on.
        let err = block_on(store.write(&sample(1), None)).unwrap_err();
        assert!(
            matches!(err, StateError::Conflict { .. }),
            "{name}: {err:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}");
        assert!(!store.backup_path().exists(), "{name}");
    }
}

#[test]
fn no_temp_file_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    let v1 = block_on(store.write(&sample(1), None)).unwrap();
    let v2 = block_on(store.write(&sample(2), Some(&v1))).unwrap();
    // A failed write (stale version) leaves nothing behind either.
    block_on(store.write(&sample(3), Some(&v1))).unwrap_err();
    block_on(store.write(&sample(3), Some(&v2))).unwrap();
    let names = listing(dir.path());
    assert!(
        names.iter().all(|n| !n.ends_with(".tmp")),
        "temporary files left: {names:?}"
    );
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn write_into_a_missing_directory_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("no/such/dir/flotilla.state.json"));
    assert!(block_on(store.read()).unwrap().is_none());
    let message = block_on(store.write(&sample(1), None))
        .unwrap_err()
        .to_string();
    assert!(message.contains("no/such/dir"), "{message}");
    assert!(message.contains("make sure"), "{message}");
}

#[test]
fn a_directory_as_state_path_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let err = block_on(store.read()).unwrap_err();
    assert!(matches!(err, StateError::Storage { .. }), "{err:?}");
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[cfg(unix)]
#[test]
fn write_keeps_the_file_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = LocalStore::new(&path);
    let v1 = block_on(store.write(&sample(1), None)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    block_on(store.write(&sample(2), Some(&v1))).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(store.backup_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[cfg(unix)]
#[test]
fn write_through_a_symlink_replaces_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    let link = state_path(&dir);
    let first = LocalStore::new(&real);
    let v1 = block_on(first.write(&sample(1), None)).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = LocalStore::new(&link);
    block_on(store.write(&sample(2), Some(&v1))).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let (state, _) = block_on(first.read()).unwrap().unwrap();
    assert_eq!(state.serial, 2);
}

#[test]
fn lock_is_exclusive_between_stores_and_unlock_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let a = LocalStore::new(&path);
    let b = LocalStore::new(&path);
    let info = LockInfo::new("apply");
    block_on(a.lock(&info)).unwrap();

    let err = block_on(b.lock(&LockInfo::new("plan"))).unwrap_err();
    match &err {
        StateError::Locked { holder, .. } => assert_eq!(**holder, info),
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "locked by {} for apply since {} (heartbeat ",
            info.who, info.created
        )),
        "{message}"
    );
    // The holder's heartbeat rewrites its description; the lock stays the same.
    block_on(a.heartbeat(&info.id)).unwrap();
    match block_on(b.lock(&LockInfo::new("plan"))).unwrap_err() {
        StateError::Locked { holder, .. } => assert_eq!(holder.id, info.id),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(block_on(b.heartbeat(&info.id)).is_err(), "b holds no lock");
    // A second lock through the same store is refused too.
    assert!(matches!(
        block_on(a.lock(&LockInfo::new("plan"))),
        Err(StateError::Locked { .. })
    ));
    // A write by another store waits for no one: it is refused while the lock is held ...
    let err = block_on(b.write(&sample(1), None)).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    // ... while the holder writes freely.
    block_on(a.write(&sample(1), None)).unwrap();

    // Unlocking with another id is refused and keeps the lock.
    assert!(block_on(a.unlock("not-the-id")).is_err());
    assert!(block_on(b.lock(&LockInfo::new("plan"))).is_err());

    block_on(a.unlock(&info.id)).unwrap();
    assert_eq!(std::fs::read_to_string(a.lock_path()).unwrap(), "");
    // Unlocking again is harmless.
    block_on(a.unlock(&info.id)).unwrap();
    let second = LockInfo::new("plan");
    block_on(b.lock(&second)).unwrap();
    block_on(b.unlock(&second.id)).unwrap();
}

#[test]
fn dropping_a_locked_store_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let a = LocalStore::new(&path);
    block_on(a.lock(&LockInfo::new("apply"))).unwrap();
    drop(a);
    let b = LocalStore::new(&path);
    block_on(b.lock(&LockInfo::new("apply"))).unwrap();
}

#[test]
fn unreadable_lock_info_still_reports_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state_path(&dir));
    // Someone holds the OS lock but left no readable description.
    let mut raw = std::fs::File::create(store.lock_path()).unwrap();
    raw.write_all(b"\x00garbage").unwrap();
    raw.try_lock().unwrap();
    let err = block_on(store.lock(&LockInfo::new("apply"))).unwrap_err();
    match &err {
        StateError::Locked { holder, .. } => assert_eq!(holder.who, "unknown"),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("locked by unknown for unknown since unknown;"),
        "{err}"
    );
}

#[test]
fn force_unlock_of_a_free_lock_clears_stale_info() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state_path(&dir));
    // Nothing was ever locked.
    block_on(store.force_unlock("anything")).unwrap();
    // A holder that died left its description behind; the OS lock is free.
    let stale = LockInfo::new("apply");
    std::fs::write(store.lock_path(), serde_json::to_string(&stale).unwrap()).unwrap();
    block_on(store.force_unlock(&stale.id)).unwrap();
    assert_eq!(std::fs::read_to_string(store.lock_path()).unwrap(), "");
    block_on(store.lock(&LockInfo::new("apply"))).unwrap();
}

#[test]
fn force_unlock_of_own_lock_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state_path(&dir));
    let info = LockInfo::new("apply");
    block_on(store.lock(&info)).unwrap();
    assert!(block_on(store.force_unlock("other-id")).is_err());
    block_on(store.force_unlock(&info.id)).unwrap();
    block_on(LocalStore::new(state_path(&dir)).lock(&LockInfo::new("apply"))).unwrap();
}

/// Not a test on its own: when re-executed with [`HOLD_ENV`] set, takes the lock on that state,
/// announces `LOCKED <id>` and holds it until killed.
#[test]
fn helper_hold_lock_until_killed() {
    let Ok(path) = std::env::var(HOLD_ENV) else {
        return;
    };
    let store = LocalStore::new(path);
    let info = LockInfo::new("apply");
    block_on(store.lock(&info)).expect("the helper takes the lock");
    let mut out = std::io::stdout();
    writeln!(out, "LOCKED {}", info.id).unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Kills the helper when a test fails half-way.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this test binary as a lock holder on `path`; returns it and its lock id.
fn spawn_holder(path: &Path) -> (Holder, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_hold_lock_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-executing the test binary");
    let stdout = child.stdout.take().unwrap();
    let holder = Holder(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints `test NAME ... ` on the same line first.
            if let Some((_, id)) = line.split_once("LOCKED ") {
                let _ = tx.send(id.trim().to_string());
            }
        }
    });
    let id = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the helper process took the lock");
    (holder, id)
}

#[test]
fn lock_held_by_another_process_is_refused_then_released_when_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut holder, id) = spawn_holder(&path);
    let pid = holder.0.id();
    let store = LocalStore::new(&path);

    let err = block_on(store.lock(&LockInfo::new("apply"))).unwrap_err();
    match &err {
        StateError::Locked { holder, url } => {
            assert_eq!(holder.id, id);
            assert_eq!(holder.operation, "apply");
            assert!(holder.who.ends_with(&format!("(pid {pid})")), "{holder:?}");
            assert_eq!(url, &path.display().to_string());
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("` locked by"), "{message}");
    assert!(
        message.contains(&format!("(pid {pid}) for apply since ")),
        "{message}"
    );
    assert!(message.contains("s ago)"), "{message}");

    // A write from this process is refused while the other holds the lock.
    let err = block_on(store.write(&sample(1), None)).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    assert!(!path.exists());

    // A live holder's local lock cannot be forced; the message says why and what to do.
    let message = block_on(store.force_unlock(&id)).unwrap_err().to_string();
    assert!(message.contains("running process"), "{message}");
    assert!(message.contains(&format!("kill {pid}")), "{message}");
    assert!(
        message.contains("released the moment that process exits"),
        "{message}"
    );

    // kill -9: the OS drops the lock with the process.
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let info = LockInfo::new("apply");
    block_on(store.lock(&info)).unwrap();
    block_on(store.write(&sample(1), None)).unwrap();
    block_on(store.unlock(&info.id)).unwrap();
}
