//! The one state writer of an apply.
//!
//! Operations send their result here and wait for the write that contains it before they
//! report done, so a completed operation is durable before its dependents start. The writer
//! takes every result waiting when it wakes into one write (group commit): each write raises
//! the serial by one and is conditional on the version of the previous one, so writes chain
//! and a concurrent writer is detected, never overwritten. After the first failed write it
//! writes nothing more and answers every later result with the failure.

use super::cancel::CancelToken;
use crate::state::{Resource, State, StateError, StateStore, StoredVersion};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// A change to the state.
#[derive(Debug)]
pub(super) enum Mutation {
    /// Insert or replace the resource at its address.
    Put(Box<Resource>),
    /// Remove the resource at this address.
    Remove(String),
}

type Ack = oneshot::Sender<Result<(), String>>;

/// The handle operations record through.
#[derive(Clone)]
pub(super) struct Recorder {
    state: Arc<Mutex<State>>,
    tx: mpsc::UnboundedSender<(Mutation, Ack)>,
}

/// What the writer left when it stopped.
pub(super) struct Written {
    pub(super) version: Option<StoredVersion>,
    pub(super) error: Option<StateError>,
    /// The in-memory state at the end: everything recorded, written or not.
    pub(super) state: State,
}

impl Recorder {
    /// Starts the writer. `halt` is cancelled when a write fails, so that nothing more starts.
    pub(super) fn start(
        store: Arc<dyn StateStore>,
        state: State,
        version: Option<StoredVersion>,
        halt: CancelToken,
    ) -> (Recorder, tokio::task::JoinHandle<Written>) {
        let state = Arc::new(Mutex::new(state));
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(store, state.clone(), version, rx, halt));
        (Recorder { state, tx }, writer)
    }

    /// Applies `m` and waits until it is written; `Err` says why it could not be.
    pub(super) async fn record(&self, m: Mutation) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        if self.tx.send((m, ack)).is_err() {
            return Err("the state writer has stopped".to_string());
        }
        done.await
            .unwrap_or_else(|_| Err("the state writer has stopped".to_string()))
    }

    /// Reads the in-memory state (everything recorded so far).
    pub(super) fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&lock(&self.state))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn apply_mutation(s: &mut State, m: &Mutation) {
    match m {
        Mutation::Put(r) => match s.resources.iter_mut().find(|x| x.address == r.address) {
            Some(slot) => *slot = (**r).clone(),
            None => s.resources.push((**r).clone()),
        },
        // `forget` counts the removal, so the next create at the address gets a new token.
        Mutation::Remove(address) => {
            s.forget(address);
        }
    }
}

async fn write_loop(
    store: Arc<dyn StateStore>,
    state: Arc<Mutex<State>>,
    mut version: Option<StoredVersion>,
    mut rx: mpsc::UnboundedReceiver<(Mutation, Ack)>,
    halt: CancelToken,
) -> Written {
    // The writer keeps its own copy, so that a write needs no snapshot of the shared state
    // (a clone of every resource) and the operations can read the shared one meanwhile.
    let mut own = lock(&state).clone();
    // The state as last stored by this apply, and every address it changed: what a lost
    // compare-and-swap compares the newer state with.
    let mut written = own.clone();
    let mut mine: BTreeSet<String> = BTreeSet::new();
    let mut failed: Option<(StateError, String)> = None;
    while let Some(first) = rx.recv().await {
        // Operations that finish together arrive within a moment of each other: let them
        // queue, so that one write carries them all.
        tokio::task::yield_now().await;
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        {
            let mut shared = lock(&state);
            for (m, _) in &batch {
                apply_mutation(&mut shared, m);
                apply_mutation(&mut own, m);
            }
            if failed.is_none() {
                shared.serial += 1;
                own.serial += 1;
            }
        }
        for (m, _) in &batch {
            mine.insert(mutation_address(m).to_string());
        }
        let result = match &failed {
            Some((_, why)) => Err(why.clone()),
            None => {
                match write_or_merge(&*store, &mut own, &written, &mine, &batch, &version).await {
                    Ok((v, merged)) => {
                        if merged {
                            *lock(&state) = own.clone();
                        }
                        version = Some(v);
                        written = own.clone();
                        Ok(())
                    }
                    Err(e) => {
                        let why = e.to_string();
                        failed = Some((e, why.clone()));
                        halt.cancel();
                        Err(why)
                    }
                }
            }
        };
        for (_, ack) in batch {
            let _ = ack.send(result.clone());
        }
    }
    let state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Written {
        version,
        error: failed.map(|(e, _)| e),
        state,
    }
}

/// The address a mutation changes.
fn mutation_address(m: &Mutation) -> &str {
    match m {
        Mutation::Put(r) => &r.address,
        Mutation::Remove(address) => address,
    }
}

/// How often a write that lost the compare-and-swap re-reads and merges before giving up: each
/// round means yet another writer got in between, which only a busy state sees.
const MERGE_ROUNDS: usize = 5;

/// Writes `own` conditionally on `version`. When another writer got in first, re-reads: if
/// the newer state left every address this apply changed (`mine`) as this apply last wrote it
/// (`written`), the `batch` is applied to the newer state, `own` becomes that, and it is
/// written conditionally on the newer version (`true` in the answer: merged). Otherwise fails
/// with [`StateError::ConflictingChanges`] naming the addresses, and writes nothing.
async fn write_or_merge(
    store: &dyn StateStore,
    own: &mut State,
    written: &State,
    mine: &BTreeSet<String>,
    batch: &[(Mutation, Ack)],
    version: &Option<StoredVersion>,
) -> Result<(StoredVersion, bool), StateError> {
    let mut err = match store.write(own, version.as_ref()).await {
        Ok(v) => return Ok((v, false)),
        Err(e @ StateError::Conflict { .. }) => e,
        Err(e) => return Err(e),
    };
    for _ in 0..MERGE_ROUNDS {
        let Some((newer, newer_version)) = store.read().await? else {
            // The state was deleted under this apply: nothing to merge into.
            return Err(err);
        };
        let mut clashes: Vec<String> = if newer.lineage == written.lineage {
            mine.iter()
                .filter(|a| newer.get(a) != written.get(a))
                .cloned()
                .collect()
        } else {
            mine.iter().cloned().collect()
        };
        if newer.outputs != written.outputs && own.outputs != written.outputs {
            clashes.push("outputs".to_string());
        }
        if !clashes.is_empty() {
            clashes.sort_by(|a, b| crate::state::address_cmp(a, b));
            return Err(StateError::ConflictingChanges {
                url: store.url(),
                addresses: clashes,
            });
        }
        let mut merged = newer.clone();
        for (m, _) in batch {
            apply_mutation(&mut merged, m);
        }
        if own.outputs != written.outputs {
            merged.outputs = own.outputs.clone();
        }
        merged.serial = newer.serial + 1;
        merged
            .resources
            .sort_by(|a, b| crate::state::address_cmp(&a.address, &b.address));
        match store.write(&merged, Some(&newer_version)).await {
            Ok(v) => {
                *own = merged;
                return Ok((v, true));
            }
            Err(e @ StateError::Conflict { .. }) => err = e,
            Err(e) => return Err(e),
        }
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    //! The lost compare-and-swap: merged when the other writer left this apply's addresses
    //! alone, refused naming them when it did not.

    use super::*;
    use crate::apply::fake::MemoryStore;
    use crate::catalog::ProviderKind;
    use crate::state::{BoxFuture, LockInfo, ResourceKind};

    fn resource(address: &str, id: &str) -> Resource {
        Resource {
            address: address.to_string(),
            kind: ResourceKind::Instance,
            provider: ProviderKind::Aws,
            provider_id: id.to_string(),
            region: "us-east-1".to_string(),
            zone: String::new(),
            offer: None,
            attributes: Default::default(),
            dependencies: vec![],
        }
    }

    /// A store where another writer changes the state right after this writer's `after`th
    /// write, with `change`.
    struct Interfering {
        inner: MemoryStore,
        after: usize,
        change: fn(&mut State),
    }

    impl StateStore for Interfering {
        fn url(&self) -> String {
            self.inner.url()
        }
        fn lock<'a>(&'a self, info: &'a LockInfo) -> BoxFuture<'a, Result<(), StateError>> {
            self.inner.lock(info)
        }
        fn unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
            self.inner.unlock(id)
        }
        fn force_unlock<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), StateError>> {
            self.inner.force_unlock(id)
        }
        fn read(&self) -> BoxFuture<'_, Result<Option<(State, StoredVersion)>, StateError>> {
            self.inner.read()
        }
        fn write<'a>(
            &'a self,
            state: &'a State,
            expected: Option<&'a StoredVersion>,
        ) -> BoxFuture<'a, Result<StoredVersion, StateError>> {
            Box::pin(async move {
                let v = self.inner.write(state, expected).await?;
                if self.inner.writes().len() == self.after {
                    let mut other = state.clone();
                    other.serial += 1;
                    (self.change)(&mut other);
                    self.inner.write(&other, Some(&v)).await?;
                }
                Ok(v)
            })
        }
    }

    /// Base state `fleet.a[0]`; this writer records `fleet.a[1]`, then (after the other
    /// writer's `change`) `fleet.a[2]`.
    async fn run(change: fn(&mut State)) -> (Result<(), String>, Written, State, StoredVersion) {
        let mut base = State::empty();
        base.serial = 3;
        base.resources.push(resource("fleet.a[0]", "i-0"));
        let (inner, version) = MemoryStore::with_state(&base);
        let store = Arc::new(Interfering {
            inner,
            after: 1,
            change,
        });
        let (recorder, writer) =
            Recorder::start(store.clone(), base, Some(version), CancelToken::new());
        recorder
            .record(Mutation::Put(Box::new(resource("fleet.a[1]", "i-1"))))
            .await
            .unwrap();
        let second = recorder
            .record(Mutation::Put(Box::new(resource("fleet.a[2]", "i-2"))))
            .await;
        drop(recorder);
        let written = writer.await.unwrap();
        let (stored, version) = store.inner.current().unwrap();
        (second, written, stored, version)
    }

    fn addresses(s: &State) -> Vec<&str> {
        s.resources.iter().map(|r| r.address.as_str()).collect()
    }

    #[tokio::test]
    async fn a_lost_write_merges_when_the_other_writer_touched_other_addresses() {
        let (second, written, stored, version) = run(|s| {
            s.resources.push(resource("fleet.b[0]", "i-b"));
            s.outputs.insert("theirs".to_string(), serde_json::json!(1));
        })
        .await;
        second.unwrap();
        assert!(written.error.is_none());
        let mut got = addresses(&stored);
        got.sort_unstable();
        assert_eq!(
            got,
            ["fleet.a[0]", "fleet.a[1]", "fleet.a[2]", "fleet.b[0]"]
        );
        assert!(
            stored.outputs.contains_key("theirs"),
            "their output is kept"
        );
        // 3 (base) -> 4 (ours) -> 5 (theirs) -> 6 (merged).
        assert_eq!(stored.serial, 6);
        assert_eq!(written.state, stored);
        assert_eq!(
            written.version,
            Some(version),
            "the merged write's version is kept"
        );
    }

    #[tokio::test]
    async fn a_lost_write_fails_naming_addresses_the_other_writer_changed() {
        let (second, written, stored, _) = run(|s| {
            s.resources.retain(|r| r.address != "fleet.a[1]");
            s.resources.push(resource("fleet.a[2]", "i-theirs"));
        })
        .await;
        let why = second.unwrap_err();
        assert!(why.contains("fleet.a[1], fleet.a[2]"), "{why}");
        match &written.error {
            Some(StateError::ConflictingChanges { addresses, .. }) => {
                assert_eq!(addresses, &["fleet.a[1]", "fleet.a[2]"]);
            }
            other => panic!("{other:?}"),
        }
        // Nothing of theirs was overwritten.
        assert_eq!(addresses(&stored), ["fleet.a[0]", "fleet.a[2]"]);
        assert_eq!(stored.get("fleet.a[2]").unwrap().provider_id, "i-theirs");
        assert_eq!(stored.serial, 5);
    }
}
