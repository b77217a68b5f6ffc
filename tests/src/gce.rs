//! The Compute Engine fake (`tests/gce/server.py`), as the tests see it: where it listens
//! (`FLOTILLA_GCP_ENDPOINT`, exported by `scripts/test`), its control endpoints (`/_fault`,
//! `/_calls`) and readers of what it holds for one lineage, over the harness's tiny HTTP/1.1
//! client ([`crate::http`]).
//!
//! Tests run in parallel against one fake: each uses its own lineage (and so its own labels),
//! scopes its faults to its own calls (the `_any` match on its lineage) and never resets.

use crate::http::{self, encode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The project every GCP test fleet uses.
pub const PROJECT: &str = "flotilla-test";

/// Why a test cannot run: said loudly, never skipped.
const NOT_RUNNING: &str = "the Compute Engine fake is not running: run these tests with \
     `scripts/test` (it starts tests/gce/server.py and exports FLOTILLA_GCP_ENDPOINT), or start \
     it yourself and export FLOTILLA_GCP_ENDPOINT=http://127.0.0.1:PORT";

/// The running fake.
#[derive(Debug, Clone)]
pub struct Gce {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    host: String,
}

impl Gce {
    /// The fake `scripts/test` started. Panics, saying what to do, when it is not there.
    pub fn get() -> Gce {
        let endpoint = std::env::var("FLOTILLA_GCP_ENDPOINT").unwrap_or_default();
        let Some(host) = endpoint
            .strip_prefix("http://")
            .map(|h| h.trim_end_matches('/').to_string())
        else {
            panic!("{NOT_RUNNING} (FLOTILLA_GCP_ENDPOINT is {endpoint:?})");
        };
        let gce = Gce { endpoint, host };
        match gce.request("GET", "/_health", None) {
            Ok((200, _)) => gce,
            Ok((status, body)) => panic!(
                "{NOT_RUNNING}: {} answered /_health with {status}: {body}",
                gce.endpoint
            ),
            Err(e) => panic!("{NOT_RUNNING}: cannot reach {}: {e}", gce.endpoint),
        }
    }

    /// Injects a fault (see tests/gce/server.py): `method` calls whose path, query or body
    /// contain `lineage` and that match `matches` fail with `code`. Returns its id.
    pub fn fault(
        &self,
        method: &str,
        lineage: &str,
        matches: &[(&str, &str)],
        code: &str,
    ) -> String {
        let mut m: serde_json::Map<String, Value> = matches
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::from(*v)))
            .collect();
        m.insert("_any".into(), Value::from(lineage));
        let body = json!({"method": method, "match": m, "code": code});
        let v = self.json("POST", "/_fault", Some(&body));
        v["id"].as_str().unwrap_or_default().to_string()
    }

    /// Injects a fault given as the fake's own JSON (see tests/gce/server.py). Returns its id.
    pub fn fault_json(&self, spec: &Value) -> String {
        let v = self.json("POST", "/_fault", Some(spec));
        v["id"].as_str().unwrap_or_default().to_string()
    }

    /// Sets labels on an instance through the API, as someone outside flotilla would.
    pub fn relabel(&self, instance: &Value, labels: &[(&str, &str)]) {
        let mut all = instance["labels"].as_object().cloned().unwrap_or_default();
        for (k, v) in labels {
            all.insert((*k).to_string(), Value::from(*v));
        }
        let path = format!("{}/setLabels", self_path(instance));
        let body = json!({"labels": all, "labelFingerprint": instance["labelFingerprint"]});
        self.json("POST", &path, Some(&body));
    }

    /// Whether `GET path` (under `/compute/v1/projects/PROJECT/`) finds something.
    pub fn exists(&self, path: &str) -> bool {
        let path = format!("/compute/v1/projects/{PROJECT}/{path}");
        match self.request("GET", &path, None) {
            Ok((200, _)) => true,
            Ok((404, _)) => false,
            other => panic!("GET {path}: {other:?}"),
        }
    }

    /// Deletes an instance through the API.
    pub fn delete_instance(&self, instance: &Value) {
        self.json("DELETE", &self_path(instance), None);
    }

    /// Removes a fault.
    pub fn clear_fault(&self, id: &str) {
        self.json("DELETE", &format!("/_fault/{id}"), None);
    }

    /// How often the fault with `id` has fired.
    pub fn fault_hits(&self, id: &str) -> u64 {
        self.json("GET", "/_fault", None)
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["id"] == id)
            .and_then(|f| f["hits"].as_u64())
            .unwrap_or(0)
    }

    /// The calls of `method` (`instances.insert`) the fake saw whose path, query or body
    /// contain `value`.
    pub fn calls(&self, method: &str, value: &str) -> Vec<Value> {
        let path = format!("/_calls?method={}&value={}", encode(method), encode(value));
        self.json("GET", &path, None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every item of an aggregated list (`instances`, `disks`, `addresses`,
    /// `forwardingRules`, `targetPools`) matching `filter`, all pages.
    pub fn aggregated(&self, collection: &str, filter: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut path = format!(
                "/compute/v1/projects/{PROJECT}/aggregated/{collection}?filter={}",
                encode(filter)
            );
            if !token.is_empty() {
                path.push_str(&format!("&pageToken={}", encode(&token)));
            }
            let page = self.json("GET", &path, None);
            for scoped in page["items"].as_object().into_iter().flatten() {
                out.extend(scoped.1[collection].as_array().cloned().unwrap_or_default());
            }
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return out,
            }
        }
    }

    /// Every instance labelled with `lineage`, in any state.
    pub fn all_instances(&self, lineage: &str) -> Vec<Value> {
        self.aggregated("instances", &lineage_filter(lineage))
    }

    /// The instances labelled with `lineage`, by the exact address in their metadata.
    pub fn instances(&self, lineage: &str) -> BTreeMap<String, Value> {
        self.all_instances(lineage)
            .into_iter()
            .map(|i| (metadata(&i, "flotilla-address").unwrap_or_default(), i))
            .collect()
    }

    /// The disks labelled with `lineage` (volumes and boot disks).
    pub fn disks(&self, lineage: &str) -> Vec<Value> {
        self.aggregated("disks", &lineage_filter(lineage))
    }

    /// The target pools made for `lineage` (they carry no labels: found by name prefix).
    pub fn target_pools(&self, lineage: &str) -> Vec<Value> {
        let prefix: String = lineage
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        self.aggregated("targetPools", &format!("name eq \"fl-{prefix}-.*\""))
    }

    /// Everything left for `lineage`: instances, disks, addresses, forwarding rules, target
    /// pools, as `collection/name`.
    pub fn leftovers(&self, lineage: &str) -> Vec<String> {
        let mut out = Vec::new();
        for collection in ["instances", "disks", "addresses", "forwardingRules"] {
            for item in self.aggregated(collection, &lineage_filter(lineage)) {
                out.push(format!(
                    "{collection}/{}",
                    item["name"].as_str().unwrap_or("?")
                ));
            }
        }
        for pool in self.target_pools(lineage) {
            out.push(format!(
                "targetPools/{}",
                pool["name"].as_str().unwrap_or("?")
            ));
        }
        out
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string);
        let (status, out) = self
            .request(method, path, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method} {path}: {e}: {out}"))
    }

    /// One HTTP/1.1 request to the fake; (status, body).
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        http::json(&self.host, method, path, body)
    }
}

/// The path of a resource under the fake's endpoint, from its self link.
fn self_path(item: &Value) -> String {
    let link = item["selfLink"].as_str().unwrap_or_default();
    format!(
        "/compute/v1/{}",
        link.split_once("/compute/v1/").map_or(link, |(_, p)| p)
    )
}

/// The filter that selects a lineage's labelled resources.
pub fn lineage_filter(lineage: &str) -> String {
    format!(
        "labels.flotilla-lineage = \"{}\"",
        lineage.to_ascii_lowercase()
    )
}

/// The value of an instance's metadata `key`.
pub fn metadata(item: &Value, key: &str) -> Option<String> {
    item["metadata"]["items"]
        .as_array()?
        .iter()
        .find(|i| i["key"] == key)
        .and_then(|i| i["value"].as_str())
        .map(str::to_string)
}

/// The last segment of a resource URL.
pub fn last(url: &Value) -> String {
    url.as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}
