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
        Mutation::Remove(address) => s.resources.retain(|x| x.address != *address),
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
        let result = match &failed {
            Some((_, why)) => Err(why.clone()),
            None => match store.write(&own, version.as_ref()).await {
                Ok(v) => {
                    version = Some(v);
                    Ok(())
                }
                Err(e) => {
                    let why = e.to_string();
                    failed = Some((e, why.clone()));
                    halt.cancel();
                    Err(why)
                }
            },
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
