//! fake-gcs-server, as the tests see it: where it listens (`STORAGE_EMULATOR_HOST`, exported by
//! `scripts/test`), and the few JSON API calls a test makes behind flotilla's back — create a
//! bucket, plant or read an object — spoken over the harness's tiny HTTP/1.1 client
//! ([`crate::http`]) so it needs no GCS client of its own.
//!
//! Tests run in parallel against one server: each makes its own bucket ([`FakeGcs::bucket`],
//! or [`GcsBucket`] for the tests written once for every store).

use crate::http::{self, encode};
use crate::state_suite::Bucket;
use std::future::Future;

/// Why a test cannot run: said loudly, never skipped.
const NOT_RUNNING: &str = "fake-gcs-server is not running: run these tests with `scripts/test` \
     (it installs fake-gcs-server, starts it and exports STORAGE_EMULATOR_HOST), or start it \
     yourself (`fake-gcs-server -scheme http -host 127.0.0.1 -port PORT -backend memory`) and \
     export STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT";

/// The running fake-gcs-server.
#[derive(Debug, Clone)]
pub struct FakeGcs {
    /// `host:port`.
    host: String,
}

impl FakeGcs {
    /// The server `scripts/test` started. Panics, saying what to do, when it is not there.
    pub fn get() -> FakeGcs {
        let value = std::env::var("STORAGE_EMULATOR_HOST").unwrap_or_default();
        let host = value
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if host.is_empty() || host.contains("://") {
            panic!("{NOT_RUNNING} (STORAGE_EMULATOR_HOST is {value:?})");
        }
        let gcs = FakeGcs { host };
        match gcs.request("GET", "/storage/v1/b", &[], "") {
            Ok((200, _)) => gcs,
            Ok((status, body)) => panic!("{NOT_RUNNING}: {value} answered {status}: {body}"),
            Err(e) => panic!("{NOT_RUNNING}: cannot reach {value}: {e}"),
        }
    }

    /// Creates a bucket with a fresh name and returns the name.
    pub fn bucket(&self) -> String {
        let name = format!("flotilla-{}", uuid::Uuid::new_v4().simple());
        let body = serde_json::json!({ "name": name }).to_string();
        let (status, out) = self
            .request(
                "POST",
                "/storage/v1/b?project=flotilla-test",
                &[("Content-Type", "application/json")],
                &body,
            )
            .unwrap_or_else(|e| panic!("creating bucket {name}: {e}"));
        assert_eq!(status, 200, "creating bucket {name}: {out}");
        name
    }

    /// Writes `bytes` to `bucket/object` unconditionally, as someone other than flotilla would.
    pub fn put(&self, bucket: &str, object: &str, bytes: &str) {
        let path = format!(
            "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            encode(object)
        );
        let (status, out) = self
            .request(
                "POST",
                &path,
                &[("Content-Type", "application/json")],
                bytes,
            )
            .unwrap_or_else(|e| panic!("writing {bucket}/{object}: {e}"));
        assert_eq!(status, 200, "writing {bucket}/{object}: {out}");
    }

    /// The content of `bucket/object`, `None` when it does not exist.
    pub fn get_object(&self, bucket: &str, object: &str) -> Option<String> {
        let path = format!("/storage/v1/b/{bucket}/o/{}?alt=media", encode(object));
        let (status, out) = self
            .request("GET", &path, &[], "")
            .unwrap_or_else(|e| panic!("reading {bucket}/{object}: {e}"));
        match status {
            200 => Some(out),
            404 => None,
            _ => panic!("reading {bucket}/{object}: {status} {out}"),
        }
    }

    /// One HTTP/1.1 request; (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, String), String> {
        http::request(&self.host, method, path, headers, body)
    }
}

/// A fresh bucket on fake-gcs-server, as the tests written once for every store see it.
#[derive(Debug, Clone)]
pub struct GcsBucket {
    gcs: FakeGcs,
    /// The bucket's name.
    pub name: String,
}

impl GcsBucket {
    /// Creates a new, empty bucket. Panics, saying what to do, when fake-gcs-server is not
    /// running. (Async only to be made like the other stores' buckets.)
    pub async fn new() -> GcsBucket {
        let gcs = FakeGcs::get();
        let name = gcs.bucket();
        GcsBucket { gcs, name }
    }
}

impl Bucket for GcsBucket {
    fn url(&self, key: &str) -> String {
        format!("gs://{}/{key}", self.name)
    }

    fn missing_url(&self) -> String {
        format!("gs://{}-missing/state.json", self.name)
    }

    fn put_raw(&self, key: &str, text: &str) -> impl Future<Output = ()> {
        self.gcs.put(&self.name, key, text);
        std::future::ready(())
    }

    fn get_raw(&self, key: &str) -> impl Future<Output = Option<String>> {
        std::future::ready(self.gcs.get_object(&self.name, key))
    }
}
