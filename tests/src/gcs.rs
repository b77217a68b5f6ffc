//! fake-gcs-server, as the tests see it: where it listens (`STORAGE_EMULATOR_HOST`, exported by
//! `scripts/test`), and the few JSON API calls a test makes behind flotilla's back — create a
//! bucket, plant or read an object — spoken over plain HTTP/1.1 so the harness needs no GCS
//! client of its own.
//!
//! Tests run in parallel against one server: each makes its own bucket ([`FakeGcs::bucket`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
        let mut stream = TcpStream::connect(&self.host).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .map_err(|e| e.to_string())?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head}"))?;
        Ok((status, body.to_string()))
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
