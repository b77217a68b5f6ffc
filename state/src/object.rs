//! The seam between flotilla's object-store state logic and the three clouds' blob APIs.
//!
//! S3, Google Cloud Storage and Azure Blob all offer the same four things flotilla needs: read
//! an object with its version (ETag or generation), write one only if its version is still the
//! one read (or only if it does not exist yet), and delete one. Everything else — the state
//! document, the lock object with its heartbeat, the backup, the error messages — is written
//! once, over this seam, in the generic object store, so the three backends stay thin adapters
//! of their SDKs.

use flotilla_core::state::BoxFuture;

/// What a conditional write or delete requires of the object's current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition<'a> {
    /// Only if no object exists (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`, Azure
    /// `If-None-Match: *`).
    Absent,
    /// Only if the object's version is still this one (S3/Azure `If-Match: ETAG`, GCS
    /// `ifGenerationMatch=N`).
    Matches(&'a str),
    /// Unconditionally (backups; deleting a lock already checked by id).
    None,
}

/// An object as read: its bytes and the opaque version a later conditional write names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    /// The object's content.
    pub(crate) bytes: Vec<u8>,
    /// ETag (S3, Azure) or generation (GCS), as the backend reports it.
    pub(crate) version: String,
}

/// Why a backend call failed, in the terms the generic store acts on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// The precondition did not hold (HTTP 412, or Azure's 409 `BlobAlreadyExists` for
    /// [`Precondition::Absent`]): someone else wrote or created the object first.
    #[error("the object was changed by someone else")]
    PreconditionFailed,
    /// The bucket or container does not exist (named as its URL, `s3://b`, `az://acct/c`).
    #[error(
        "`{0}` does not exist; create the bucket or container first (flotilla never creates one)"
    )]
    NoBucket(String),
    /// The credentials were refused (HTTP 401/403).
    #[error(
        "access denied: {0}. Check the credentials flotilla found (see the docs for the lookup order)"
    )]
    Denied(String),
    /// Anything else: network, throttling that outlasted retries, a server error.
    #[error("{0}")]
    Other(String),
}

/// One cloud's blob API, addressed by key within the bucket/container the backend was opened
/// on. Implementations: S3 (`s3.rs`), GCS (`gcs.rs`), Azure Blob (`azure.rs`).
pub(crate) trait Backend: Send + Sync {
    /// `s3://bucket/key`, `gs://bucket/object`, `az://account/container/blob`: for messages.
    fn url(&self, key: &str) -> String;

    /// Reads `key`; `Ok(None)` when the object does not exist (but the bucket does).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>, BackendError>>;

    /// Writes `bytes` to `key` if `precondition` holds; returns the new version.
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<String, BackendError>>;

    /// Deletes `key` if `precondition` holds (backends whose service ignores conditional
    /// deletes may check and delete in two steps); a missing object is not an error.
    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<(), BackendError>>;
}
