//! The state store shared by every object store (S3, GCS, Azure Blob), over the [`Backend`]
//! seam.
//!
//! Why it is built this way:
//!
//! - **Compare-and-swap, never last-writer-wins.** Every write names the version (ETag,
//!   generation) of the document it replaces, or requires that there is none yet; the service
//!   refuses a write whose version is gone, and that becomes [`StateError::Conflict`]. So two
//!   writers can never silently overwrite each other, whatever the locks do.
//! - **A backup before every replace.** The document being replaced is first copied to
//!   `KEY.backup` (an unconditional write), so the previous version stays recoverable also on
//!   a bucket without versioning. If the backup cannot be written the state is not replaced.
//! - **A lock object with a heartbeat.** The lock is the object `KEY.lock`, created only if it
//!   does not exist, holding the holder's [`LockInfo`] as JSON. A holder renews the heartbeat
//!   in it with a compare-and-swap on the lock object's own version, so it notices at once when
//!   someone broke its lock. A lock whose heartbeat is older than its TTL is reported stale
//!   (its holder died: nothing on the service releases an object), with the command that
//!   breaks it; nothing breaks a lock on its own, because a holder that is only slow must not
//!   lose it behind its back.
//! - **Force-unlock by id only.** `force_unlock(id)` deletes the lock object only when it holds
//!   that id, conditionally on the version it read, so a lock taken by someone else in the
//!   meantime is never removed by mistake.
//!
//! The store writes exactly the document it is given: raising `serial` (and keeping `lineage`)
//! is the caller's job, as for the local store.

use crate::object::{Backend, BackendError, Object, Precondition};
use flotilla_core::state::{BoxFuture, LockInfo, State, StateError, StateStore, StoredVersion};
use std::sync::{Mutex, MutexGuard};

/// A state document in an object store: the object `key`, with `key.backup` (the previous
/// version) and `key.lock` (the lock) beside it.
pub(crate) struct ObjectStore {
    backend: Box<dyn Backend>,
    key: String,
    backup_key: String,
    lock_key: String,
    /// The lock this store holds, with the lock object's version for conditional renewals.
    held: Mutex<Option<Held>>,
    /// The document as last read or written, so that a write can back it up without reading
    /// it again (the version says whether it is still the one being replaced).
    last: Mutex<Option<Object>>,
}

/// A lock this store holds.
#[derive(Debug, Clone)]
struct Held {
    info: LockInfo,
    version: String,
}

impl ObjectStore {
    /// A store for the state object `key` of `backend` (the key within the bucket or
    /// container the backend was opened on). Nothing is read or written until the first
    /// operation.
    pub(crate) fn new(backend: impl Backend + 'static, key: String) -> ObjectStore {
        ObjectStore {
            backup_key: format!("{key}.backup"),
            lock_key: format!("{key}.lock"),
            backend: Box::new(backend),
            key,
            held: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    fn url_string(&self) -> String {
        self.backend.url(&self.key)
    }

    fn held(&self) -> MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn last(&self) -> MutexGuard<'_, Option<Object>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A storage error naming the state; `what` says what was being done.
    fn storage(&self, what: &str, err: &BackendError) -> StateError {
        StateError::Storage {
            url: self.url_string(),
            message: format!("{what}: {err}"),
            source: None,
        }
    }

    fn message(&self, message: String) -> StateError {
        StateError::Storage {
            url: self.url_string(),
            message,
            source: None,
        }
    }

    fn conflict(&self, expected: Option<&StoredVersion>) -> StateError {
        StateError::Conflict {
            url: self.url_string(),
            expected: expected.map_or_else(
                || "none, there was no state when it was read".to_string(),
                |v| v.0.clone(),
            ),
        }
    }

    async fn read_now(&self) -> Result<Option<(State, StoredVersion)>, StateError> {
        let object = self
            .backend
            .get(&self.key)
            .await
            .map_err(|e| self.storage("cannot read it", &e))?;
        let Some(object) = object else {
            return Ok(None);
        };
        let url = self.url_string();
        let text = std::str::from_utf8(&object.bytes).map_err(|e| StateError::Corrupt {
            url: url.clone(),
            message: format!("not UTF-8 text ({e})"),
        })?;
        let state = State::from_json(text, &url)?;
        let version = StoredVersion(object.version.clone());
        *self.last() = Some(object);
        Ok(Some((state, version)))
    }

    async fn write_now(
        &self,
        state: &State,
        expected: Option<&StoredVersion>,
    ) -> Result<StoredVersion, StateError> {
        let bytes = state.to_json().into_bytes();
        let precondition = match expected {
            None => Precondition::Absent,
            Some(v) => {
                self.backup(v).await?;
                Precondition::Matches(&v.0)
            }
        };
        let version = match self
            .backend
            .put(&self.key, bytes.clone(), precondition)
            .await
        {
            Ok(version) => version,
            Err(BackendError::PreconditionFailed) => return Err(self.conflict(expected)),
            Err(e) => {
                return Err(self.storage("cannot write it (the state was not changed)", &e));
            }
        };
        *self.last() = Some(Object {
            bytes,
            version: version.clone(),
        });
        Ok(StoredVersion(version))
    }

    /// Copies the document at version `expected` to `KEY.backup`; a document that is no
    /// longer at that version is a conflict, found here before anything is written.
    async fn backup(&self, expected: &StoredVersion) -> Result<(), StateError> {
        let cached = self
            .last()
            .as_ref()
            .filter(|o| o.version == expected.0)
            .map(|o| o.bytes.clone());
        let previous = match cached {
            Some(bytes) => bytes,
            None => {
                let current = self
                    .backend
                    .get(&self.key)
                    .await
                    .map_err(|e| self.storage("cannot read it", &e))?;
                match current {
                    Some(o) if o.version == expected.0 => o.bytes,
                    _ => return Err(self.conflict(Some(expected))),
                }
            }
        };
        self.backend
            .put(&self.backup_key, previous, Precondition::None)
            .await
            .map_err(|e| {
                self.storage(
                    &format!(
                        "cannot write the backup {} (the state was not changed)",
                        self.backend.url(&self.backup_key)
                    ),
                    &e,
                )
            })?;
        Ok(())
    }

    /// The lock object's holder and version; `None` when there is no lock.
    async fn read_lock(&self) -> Result<Option<(LockInfo, String)>, StateError> {
        let object = self.backend.get(&self.lock_key).await.map_err(|e| {
            self.storage(
                &format!("cannot read the lock {}", self.backend.url(&self.lock_key)),
                &e,
            )
        })?;
        let Some(object) = object else {
            return Ok(None);
        };
        let info = serde_json::from_slice::<LockInfo>(&object.bytes).map_err(|e| {
            self.message(format!(
                "the lock object {} is not a flotilla lock ({e}); if no flotilla is running on \
                 this state, delete that object by hand",
                self.backend.url(&self.lock_key)
            ))
        })?;
        Ok(Some((info, object.version)))
    }

    async fn lock_now(&self, info: &LockInfo) -> Result<(), StateError> {
        if let Some(h) = self.held().as_ref() {
            return Err(StateError::Locked {
                url: self.url_string(),
                holder: Box::new(h.info.clone()),
            });
        }
        // Twice: a lock released between the failed create and the read is worth one retry.
        for _ in 0..2 {
            let bytes = lock_json(info);
            match self
                .backend
                .put(&self.lock_key, bytes, Precondition::Absent)
                .await
            {
                Ok(version) => {
                    *self.held() = Some(Held {
                        info: info.clone(),
                        version,
                    });
                    return Ok(());
                }
                Err(BackendError::PreconditionFailed) => {
                    if let Some((holder, version)) = self.read_lock().await? {
                        if holder.id == info.id {
                            // Our own create landed and a retry of it (after an answer that
                            // was lost) found it: the lock is ours.
                            *self.held() = Some(Held {
                                info: info.clone(),
                                version,
                            });
                            return Ok(());
                        }
                        return Err(StateError::Locked {
                            url: self.url_string(),
                            holder: Box::new(holder),
                        });
                    }
                }
                Err(e) => {
                    return Err(self.storage(
                        &format!(
                            "cannot create the lock {}",
                            self.backend.url(&self.lock_key)
                        ),
                        &e,
                    ));
                }
            }
        }
        Err(StateError::Locked {
            url: self.url_string(),
            holder: Box::new(LockInfo::unknown()),
        })
    }

    async fn heartbeat_now(&self, id: &str) -> Result<(), StateError> {
        let Some(held) = self.held().clone().filter(|h| h.info.id == id) else {
            return Err(self.message(format!(
                "lock {id} is not held by this process; cannot renew it"
            )));
        };
        let info = held.info.clone().beat();
        match self
            .backend
            .put(
                &self.lock_key,
                lock_json(&info),
                Precondition::Matches(&held.version),
            )
            .await
        {
            Ok(version) => {
                let mut slot = self.held();
                // Unless it was released meanwhile.
                if slot.as_ref().is_some_and(|h| h.info.id == id) {
                    *slot = Some(Held { info, version });
                }
                Ok(())
            }
            Err(BackendError::PreconditionFailed) => {
                // Only this process writes a lock with this id: if the object still holds it,
                // our own write landed (a retry after a lost answer, or an earlier renewal
                // that finished late) and the lock is still ours, at a version we did not see.
                if let Some((holder, version)) = self.read_lock().await?
                    && holder.id == id
                {
                    let mut slot = self.held();
                    if slot.as_ref().is_some_and(|h| h.info.id == id) {
                        *slot = Some(Held {
                            info: holder,
                            version,
                        });
                    }
                    return Ok(());
                }
                // Broken by `force-unlock` (and perhaps taken by someone else since): it is no
                // longer ours, and another flotilla may be writing. Stop claiming it.
                self.held().take();
                Err(self.message(format!(
                    "this process's lock {id} was broken by someone else (flotilla force-unlock); \
                     another flotilla may be changing the state now. Stop, check the state with \
                     `flotilla state list`, and run the command again"
                )))
            }
            Err(e) => Err(self.storage("cannot renew the lock's heartbeat", &e)),
        }
    }

    async fn unlock_now(&self, id: &str) -> Result<(), StateError> {
        let held = self.held().clone();
        let Some(held) = held else {
            return Ok(());
        };
        if held.info.id != id {
            return Err(self.message(format!(
                "lock id {id} is not the lock this process holds ({}); nothing was unlocked",
                held.info.id
            )));
        }
        let cannot_remove = |e: &BackendError| {
            self.storage(
                &format!(
                    "cannot remove the lock {}; remove it with `flotilla force-unlock {id}`",
                    self.backend.url(&self.lock_key)
                ),
                e,
            )
        };
        let mut version = held.version;
        // A renewal can land after `held` was read (stopping the heartbeat task drops its
        // request, which the service may still carry out), leaving our lock at a version we
        // never saw: delete that one too, a few times over, but never a lock with another id.
        for _ in 0..4 {
            match self
                .backend
                .delete(&self.lock_key, Precondition::Matches(&version))
                .await
            {
                Ok(()) => {
                    self.held().take();
                    return Ok(());
                }
                Err(BackendError::PreconditionFailed) => match self.read_lock().await? {
                    Some((holder, current)) if holder.id == id => version = current,
                    // Gone or replaced: someone broke it; what is there now is not ours.
                    _ => {
                        self.held().take();
                        return Ok(());
                    }
                },
                Err(e) => return Err(cannot_remove(&e)),
            }
        }
        Err(cannot_remove(&BackendError::Other(
            "it kept changing while being removed".to_string(),
        )))
    }

    async fn force_unlock_now(&self, id: &str) -> Result<(), StateError> {
        let Some((holder, version)) = self.read_lock().await? else {
            return Err(self.message(format!(
                "is not locked (there is no {}); nothing was removed",
                self.backend.url(&self.lock_key)
            )));
        };
        if holder.id != id {
            return Err(self.message(format!(
                "the lock is {}, not {id}: it is {}; nothing was removed. Check the id (it is \
                 printed in the \"state locked\" message)",
                holder.id,
                holder.describe()
            )));
        }
        match self
            .backend
            .delete(&self.lock_key, Precondition::Matches(&version))
            .await
        {
            Ok(()) => {}
            Err(BackendError::PreconditionFailed) => {
                return Err(self.message(format!(
                    "the lock {id} changed while it was being removed (its holder renewed or \
                     released it); nothing was removed. Run the command again if it is still \
                     needed"
                )));
            }
            Err(e) => return Err(self.storage("cannot remove the lock", &e)),
        }
        let mut held = self.held();
        if held.as_ref().is_some_and(|h| h.info.id == id) {
            held.take();
        }
        Ok(())
    }
}

/// The lock object's content.
fn lock_json(info: &LockInfo) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(info).unwrap_or_default();
    s.push('\n');
    s.into_bytes()
}

impl StateStore for ObjectStore {
    fn url(&self) -> String {
        self.url_string()
    }

    fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.lock_now(info))
    }

    fn unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.unlock_now(id))
    }

    fn force_unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.force_unlock_now(id))
    }

    fn heartbeat<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.heartbeat_now(id))
    }

    fn read(&self) -> BoxFuture<'_, Result<Option<(State, StoredVersion)>, StateError>> {
        Box::pin(self.read_now())
    }

    fn write<'a>(
        &'a self,
        state: &'a State,
        expected: Option<&'a StoredVersion>,
    ) -> BoxFuture<'a, Result<StoredVersion, StateError>> {
        Box::pin(self.write_now(state, expected))
    }
}

#[cfg(test)]
mod tests {
    //! The store's logic over an in-memory backend that enforces preconditions like the real
    //! services; the same behaviours run against moto in `tests/tests/state_s3.rs`.

    use super::*;
    use flotilla_core::state::LockInfo;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Objects with a counter as their version.
    #[derive(Default, Clone)]
    struct Memory(Arc<Mutex<(u64, BTreeMap<String, Object>)>>);

    impl Memory {
        fn raw(&self, key: &str) -> Option<Vec<u8>> {
            self.0.lock().unwrap().1.get(key).map(|o| o.bytes.clone())
        }
    }

    impl Backend for Memory {
        fn url(&self, key: &str) -> String {
            format!("mem://b/{key}")
        }

        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>, BackendError>> {
            let found = self.0.lock().unwrap().1.get(key).cloned();
            Box::pin(async move { Ok(found) })
        }

        fn put<'a>(
            &'a self,
            key: &'a str,
            bytes: Vec<u8>,
            precondition: Precondition<'a>,
        ) -> BoxFuture<'a, Result<String, BackendError>> {
            let mut guard = self.0.lock().unwrap();
            let (counter, objects) = &mut *guard;
            let ok = match (precondition, objects.get(key)) {
                (Precondition::None, _) | (Precondition::Absent, None) => true,
                (Precondition::Matches(v), Some(o)) => o.version == v,
                _ => false,
            };
            let result = if ok {
                *counter += 1;
                let version = format!("v{counter}");
                objects.insert(
                    key.to_string(),
                    Object {
                        bytes,
                        version: version.clone(),
                    },
                );
                Ok(version)
            } else {
                Err(BackendError::PreconditionFailed)
            };
            Box::pin(async move { result })
        }

        fn delete<'a>(
            &'a self,
            key: &'a str,
            precondition: Precondition<'a>,
        ) -> BoxFuture<'a, Result<(), BackendError>> {
            let mut guard = self.0.lock().unwrap();
            let result = match (precondition, guard.1.get(key)) {
                (_, None) => Ok(()),
                (Precondition::Matches(v), Some(o)) if o.version != v => {
                    Err(BackendError::PreconditionFailed)
                }
                _ => {
                    guard.1.remove(key);
                    Ok(())
                }
            };
            Box::pin(async move { result })
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn store(mem: &Memory) -> ObjectStore {
        ObjectStore::new(mem.clone(), "s.json".to_string())
    }

    #[test]
    fn writes_are_compare_and_swap_with_a_backup() {
        let mem = Memory::default();
        let a = store(&mem);
        let mut state = State::empty();
        state.serial = 1;
        let v1 = block_on(a.write(&state, None)).unwrap();
        // A second first write loses.
        let err = block_on(store(&mem).write(&state, None)).unwrap_err();
        assert!(matches!(err, StateError::Conflict { .. }), "{err}");
        let first = mem.raw("s.json").unwrap();
        state.serial = 2;
        let v2 = block_on(a.write(&state, Some(&v1))).unwrap();
        assert_eq!(mem.raw("s.json.backup").unwrap(), first);
        // A write against the old version loses and changes nothing.
        let b = store(&mem);
        state.serial = 3;
        let err = block_on(b.write(&state, Some(&v1))).unwrap_err();
        assert!(matches!(err, StateError::Conflict { .. }), "{err}");
        let (read, version) = block_on(b.read()).unwrap().unwrap();
        assert_eq!((read.serial, version), (2, v2));
        assert_eq!(mem.raw("s.json.backup").unwrap(), first);
    }

    #[test]
    fn a_corrupt_object_is_refused_and_left_alone() {
        let mem = Memory::default();
        block_on(mem.put("s.json", b"{\"hello\": 1}".to_vec(), Precondition::None)).unwrap();
        let err = block_on(store(&mem).read()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("mem://b/s.json"), "{err}");
    }

    #[test]
    fn locks_name_their_holder_and_renew_their_heartbeat() {
        let mem = Memory::default();
        let a = store(&mem);
        let b = store(&mem);
        let info = LockInfo::new("apply");
        block_on(a.lock(&info)).unwrap();
        let err = block_on(b.lock(&LockInfo::new("plan"))).unwrap_err();
        match &err {
            StateError::Locked { holder, .. } => assert_eq!(holder.id, info.id),
            other => panic!("{other}"),
        }
        let message = err.to_string();
        assert!(message.contains("locked by"), "{message}");
        assert!(message.contains("for apply since"), "{message}");
        assert!(message.contains("heartbeat 0 s ago"), "{message}");
        // A renewal rewrites the lock object under the same id.
        let before = mem.raw("s.json.lock").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        block_on(a.heartbeat(&info.id)).unwrap();
        let after: LockInfo = serde_json::from_slice(&mem.raw("s.json.lock").unwrap()).unwrap();
        assert_ne!(mem.raw("s.json.lock").unwrap(), before);
        assert_eq!(after.id, info.id);
        assert_ne!(after.heartbeat, info.heartbeat);
        block_on(a.unlock(&info.id)).unwrap();
        assert!(mem.raw("s.json.lock").is_none());
        block_on(b.lock(&LockInfo::new("plan"))).unwrap();
    }

    #[test]
    fn force_unlock_removes_only_the_named_lock() {
        let mem = Memory::default();
        let a = store(&mem);
        let info = LockInfo::new("apply");
        block_on(a.lock(&info)).unwrap();
        let other = store(&mem);
        let err = block_on(other.force_unlock("not-the-id")).unwrap_err();
        assert!(err.to_string().contains("nothing was removed"), "{err}");
        assert!(mem.raw("s.json.lock").is_some());
        block_on(other.force_unlock(&info.id)).unwrap();
        assert!(mem.raw("s.json.lock").is_none());
        // The broken holder learns of it at its next heartbeat, and its unlock removes nothing
        // of the next holder's.
        let next = LockInfo::new("apply");
        block_on(other.lock(&next)).unwrap();
        let err = block_on(a.heartbeat(&info.id)).unwrap_err();
        assert!(
            err.to_string().contains("was broken by someone else"),
            "{err}"
        );
        block_on(a.unlock(&info.id)).unwrap();
        let held: LockInfo = serde_json::from_slice(&mem.raw("s.json.lock").unwrap()).unwrap();
        assert_eq!(held.id, next.id);
    }

    /// What a renewal of `info` that this store never heard back about leaves behind: the
    /// lock object rewritten, under the same id, at a version the store does not know.
    fn renewed_behind_its_back(mem: &Memory, info: &LockInfo) {
        let beat = lock_json(&info.clone().beat());
        block_on(mem.put("s.json.lock", beat, Precondition::None)).unwrap();
    }

    #[test]
    fn unlock_removes_the_lock_after_a_renewal_it_did_not_see() {
        let mem = Memory::default();
        let a = store(&mem);
        let info = LockInfo::new("apply");
        block_on(a.lock(&info)).unwrap();
        renewed_behind_its_back(&mem, &info);
        block_on(a.unlock(&info.id)).unwrap();
        assert!(
            mem.raw("s.json.lock").is_none(),
            "the holder's lock is gone"
        );
        block_on(store(&mem).lock(&LockInfo::new("apply"))).unwrap();
    }

    #[test]
    fn own_writes_that_landed_unseen_keep_the_lock_ours() {
        let mem = Memory::default();
        let a = store(&mem);
        let info = LockInfo::new("apply");
        // The create went through but its answer was lost; the retry finds our own lock.
        block_on(mem.put("s.json.lock", lock_json(&info), Precondition::None)).unwrap();
        block_on(a.lock(&info)).unwrap();
        // A renewal whose answer was lost: the next one still succeeds.
        renewed_behind_its_back(&mem, &info);
        block_on(a.heartbeat(&info.id)).unwrap();
        block_on(a.heartbeat(&info.id)).unwrap();
        block_on(a.unlock(&info.id)).unwrap();
        assert!(mem.raw("s.json.lock").is_none());
    }

    #[test]
    fn a_lock_past_its_ttl_is_reported_stale_with_the_command() {
        let mem = Memory::default();
        let mut info = LockInfo::new("apply").with_ttl(std::time::Duration::from_secs(1));
        info.heartbeat = "2020-01-01T00:00:00Z".to_string();
        block_on(store(&mem).lock(&info)).unwrap();
        let err = block_on(store(&mem).lock(&LockInfo::new("plan"))).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("stale"), "{message}");
        assert!(
            message.contains(&format!("flotilla force-unlock {}", info.id)),
            "{message}"
        );
    }
}
