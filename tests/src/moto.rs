//! The moto harness, as the tests see it: where it listens (`AWS_ENDPOINT_URL`, exported by
//! `scripts/test`), SDK clients pointed at it, and its control endpoints (`/_fault`,
//! `/_calls`) spoken over the harness's tiny HTTP/1.1 client ([`crate::http`]).
//!
//! Tests run in parallel against one moto: each uses its own lineage (and so its own tags),
//! scopes its faults to its own calls (the `_any` match on its lineage) and never resets.

use crate::http::{self, encode};
use serde_json::{Value, json};
use std::time::Duration;

/// Why a test cannot run: said loudly, never skipped.
const NOT_RUNNING: &str = "moto is not running: run these tests with `scripts/test` (it installs \
     moto, starts tests/moto/server.py and exports AWS_ENDPOINT_URL), or start the harness \
     yourself and export AWS_ENDPOINT_URL=http://127.0.0.1:PORT with dummy AWS credentials";

/// The running moto harness.
#[derive(Debug, Clone)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    host: String,
}

/// One injected fault: `action` calls matching `matches` answer `code` with HTTP `status`,
/// `times` times (every time when `None`). A delay ([`Fault::delay`]) instead lets moto carry
/// the call out and holds its answer, so that a test can kill the caller mid-call.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The API action (`RunInstances`).
    pub action: String,
    /// Query parameters that must match exactly; `_any` matches any parameter's value,
    /// `_region` the signing region.
    pub matches: Vec<(String, String)>,
    /// The error code (`InsufficientInstanceCapacity`).
    pub code: String,
    /// HTTP status (EC2 answers capacity errors with 500, throttling with 503).
    pub status: u16,
    /// How many calls fail; `None`: all until removed.
    pub times: Option<u32>,
    /// Hold the answer this long (ms); with an empty `code`, moto's own answer is held.
    pub delay_ms: Option<u64>,
}

impl Fault {
    /// `action` calls carrying `value` (a lineage) fail with `code`.
    pub fn new(action: &str, value: &str, code: &str, status: u16) -> Fault {
        Fault {
            action: action.into(),
            matches: vec![("_any".into(), value.into())],
            code: code.into(),
            status,
            times: None,
            delay_ms: None,
        }
    }

    /// `action` calls carrying `value` go through to moto, whose answer is then held for
    /// `ms` milliseconds (or until the fault is removed): the call is in flight, its work done.
    pub fn delay(action: &str, value: &str, ms: u64) -> Fault {
        Fault {
            delay_ms: Some(ms),
            ..Fault::new(action, value, "", 200)
        }
    }

    /// Only the next `n` matching calls fail.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    /// Also require query parameter `key` to be `value`.
    pub fn matching(mut self, key: &str, value: &str) -> Fault {
        self.matches.push((key.into(), value.into()));
        self
    }
}

impl Moto {
    /// The harness `scripts/test` started. Panics, saying what to do, when it is not there.
    pub fn get() -> Moto {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
        let Some(host) = endpoint
            .strip_prefix("http://")
            .map(|h| h.trim_end_matches('/').to_string())
        else {
            panic!("{NOT_RUNNING} (AWS_ENDPOINT_URL is {endpoint:?})");
        };
        let moto = Moto { endpoint, host };
        match moto.request("GET", "/_health", None) {
            Ok((200, _)) => moto,
            Ok((status, body)) => panic!(
                "{NOT_RUNNING}: {} answered /_health with {status}: {body} (a plain moto_server? \
                 the tests need tests/moto/server.py)",
                moto.endpoint
            ),
            Err(e) => panic!("{NOT_RUNNING}: cannot reach {}: {e}", moto.endpoint),
        }
    }

    /// Injects a fault; returns its id.
    pub fn fault(&self, fault: &Fault) -> String {
        let code = (!fault.code.is_empty()).then_some(fault.code.as_str());
        let body = json!({
            "action": fault.action,
            "match": fault.matches.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "code": code,
            "message": format!("{} (injected by the flotilla test harness)", fault.code),
            "status": fault.status,
            "times": fault.times,
            "delay_ms": fault.delay_ms,
        });
        let (status, out) = self
            .request("POST", "/_fault", Some(&body.to_string()))
            .unwrap_or_else(|e| panic!("POST /_fault: {e}"));
        assert_eq!(status, 200, "POST /_fault: {out}");
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("POST /_fault: {e}: {out}"));
        v["id"].as_str().unwrap_or_default().to_string()
    }

    /// Removes a fault.
    pub fn clear_fault(&self, id: &str) {
        let (status, out) = self
            .request("DELETE", &format!("/_fault/{id}"), None)
            .unwrap_or_else(|e| panic!("DELETE /_fault: {e}"));
        assert_eq!(status, 200, "DELETE /_fault: {out}");
    }

    /// How often the fault with `id` has fired.
    pub fn fault_hits(&self, id: &str) -> u64 {
        self.fault_field(id, "hits")
    }

    /// How many answers the delay fault with `id` holds right now.
    pub fn fault_held(&self, id: &str) -> u64 {
        self.fault_field(id, "held")
    }

    /// The most answers the delay fault with `id` held at once: how many matching calls the
    /// client had in flight together.
    pub fn fault_max_held(&self, id: &str) -> u64 {
        self.fault_field(id, "max_held")
    }

    /// Waits (up to `timeout`) until the delay fault with `id` holds an answer, that is until
    /// moto has carried out a matching call whose caller is still waiting. Panics on timeout.
    pub fn wait_held(&self, id: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.fault_held(id) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no call matching fault {id} was held within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fault_field(&self, id: &str, field: &str) -> u64 {
        let (_, out) = self
            .request("GET", "/_fault", None)
            .unwrap_or_else(|e| panic!("GET /_fault: {e}"));
        let faults: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        faults
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["id"] == id)
            .and_then(|f| f[field].as_u64())
            .unwrap_or(0)
    }

    /// The `action` calls moto saw with a parameter equal to `value`, each a JSON object with
    /// `action`, `service`, `region`, `params`, `t` (arrival, seconds on the harness's
    /// monotonic clock) and, when an injected fault answered it, `error` (the code).
    pub fn calls(&self, action: &str, value: &str) -> Vec<Value> {
        let path = format!("/_calls?action={}&value={}", encode(action), encode(value));
        let (status, out) = self
            .request("GET", &path, None)
            .unwrap_or_else(|e| panic!("GET /_calls: {e}"));
        assert_eq!(status, 200, "GET /_calls: {out}");
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// An EC2 client on moto for `region`, with the test credentials from the environment.
    pub async fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(region).await)
    }

    /// An ELBv2 client on moto for `region`.
    pub async fn elb(&self, region: &str) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk_config(region).await)
    }

    async fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .endpoint_url(&self.endpoint)
            .load()
            .await
    }

    /// One HTTP/1.1 request to the harness; (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        http::json(&self.host, method, path, body)
    }
}
