//! `gs://BUCKET/OBJECT`: state in Google Cloud Storage, as a [`Backend`] for the generic object
//! store.
//!
//! Reads and writes go through the official `google-cloud-storage` client: a read reports the
//! object's generation, and every write is a multipart upload with `ifGenerationMatch` (0 when
//! the object must not exist yet), which makes it a compare-and-swap on the generation — the
//! only upload kind fake-gcs-server checks preconditions on, and the one real GCS uses for small
//! objects anyway. That client deletes objects and reads bucket metadata only over gRPC
//! (`google.storage.v2`), which fake-gcs-server does not serve (it speaks the older v1 gRPC),
//! so those two calls use the JSON API over reqwest with the same credentials.
//!
//! Credentials are Google's Application Default Credentials; `STORAGE_EMULATOR_HOST` (which the
//! Rust client does not read by itself) points everything at an emulator with anonymous
//! credentials, as the other Google clients do.

use crate::object::{Backend, BackendError, Object, Precondition};
use flotilla_core::state::{BoxFuture, StateError};
use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The variable the Google clients read to reach an emulator (`host:port` or a URL).
pub(crate) const EMULATOR_VAR: &str = "STORAGE_EMULATOR_HOST";

/// The real service's JSON API root.
const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";

/// How long one call keeps retrying transient failures (the client's default is 5 minutes,
/// which leaves a user with no network or no credentials staring at a silent terminal).
const RETRY_LIMIT: Duration = Duration::from_secs(60);

/// How long to wait for a connection to the JSON API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Splits `gs://BUCKET/OBJECT` into the bucket and the object name, or says what is wrong.
pub(crate) fn parse_url(url: &str) -> Result<(String, String), StateError> {
    let refuse = |why: &str| StateError::Storage {
        url: url.to_string(),
        message: format!("{why}; a GCS state URL looks like gs://BUCKET/path/to/state.json"),
        source: None,
    };
    let rest = url
        .strip_prefix("gs://")
        .or_else(|| {
            url.get(..5)
                .filter(|s| s.eq_ignore_ascii_case("gs://"))
                .map(|_| &url[5..])
        })
        .ok_or_else(|| refuse("not a gs:// URL"))?;
    let (bucket, object) = rest
        .split_once('/')
        .ok_or_else(|| refuse("no object name after the bucket"))?;
    if bucket.is_empty() {
        return Err(refuse("the bucket name is empty"));
    }
    if object.is_empty() || object.ends_with('/') {
        return Err(refuse("the object name is empty"));
    }
    // Bucket names are lowercase letters, digits, `-`, `_` and `.` (GCS naming rules); anything
    // else cannot exist, so say so now rather than after a confusing 400 from the service.
    if !bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
    {
        return Err(refuse(&format!(
            "`{bucket}` is not a valid bucket name (lowercase letters, digits, `-`, `_`, `.`)"
        )));
    }
    Ok((bucket.to_string(), object.to_string()))
}

/// Opens `gs://BUCKET/OBJECT` as a state store. Nothing is contacted until the first call.
pub(crate) fn open(url: &str) -> Result<Box<dyn flotilla_core::state::StateStore>, StateError> {
    let (bucket, object) = parse_url(url)?;
    Ok(Box::new(crate::store::ObjectStore::new(
        GcsBackend::new(bucket),
        object,
    )))
}

/// One bucket, reached through the Storage client (reads, writes) and the JSON API (deletes,
/// bucket checks).
pub(crate) struct GcsBackend {
    bucket: String,
    /// JSON API root: the emulator's URL or [`GOOGLE_ENDPOINT`].
    endpoint: String,
    /// Whether [`EMULATOR_VAR`] chose the endpoint (anonymous credentials).
    emulator: bool,
    /// Built on first use: building the Storage client is async, `open` is not.
    clients: OnceCell<Clients>,
}

/// The clients one backend shares across calls.
struct Clients {
    storage: Storage,
    http: reqwest::Client,
    credentials: Credentials,
}

impl GcsBackend {
    /// A backend for `bucket`, pointed at `STORAGE_EMULATOR_HOST` when it is set.
    pub(crate) fn new(bucket: String) -> GcsBackend {
        let (endpoint, emulator) = endpoint(std::env::var(EMULATOR_VAR).ok().as_deref());
        GcsBackend {
            bucket,
            endpoint,
            emulator,
            clients: OnceCell::new(),
        }
    }

    /// The bucket in the resource-name form the Storage client wants.
    fn bucket_path(&self) -> String {
        format!("projects/_/buckets/{}", self.bucket)
    }

    async fn clients(&self) -> Result<&Clients, BackendError> {
        self.clients
            .get_or_try_init(|| async {
                let credentials = if self.emulator {
                    credentials::anonymous::Builder::new().build()
                } else {
                    credentials::Builder::default().build().map_err(|e| {
                        BackendError::Denied(format!(
                            "no Google credentials found ({e}); run `gcloud auth \
                             application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
                        ))
                    })?
                };
                let storage = Storage::builder()
                    .with_endpoint(self.endpoint.clone())
                    .with_credentials(credentials.clone())
                    .with_retry_policy(RetryableErrors.with_time_limit(RETRY_LIMIT))
                    .build()
                    .await
                    .map_err(|e| {
                        BackendError::Other(format!("cannot set up the GCS client: {e}"))
                    })?;
                let http = reqwest::Client::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(RETRY_LIMIT)
                    .build()
                    .map_err(|e| {
                        BackendError::Other(format!("cannot set up an HTTP client: {e}"))
                    })?;
                Ok(Clients {
                    storage,
                    http,
                    credentials,
                })
            })
            .await
    }

    /// The JSON API URL of `key`'s metadata.
    fn object_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}",
            self.endpoint,
            encode(&self.bucket),
            encode(key)
        )
    }

    /// Sends a JSON API request with the credentials' headers.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BackendError> {
        let clients = self.clients().await?;
        let headers = match clients
            .credentials
            .headers(http::Extensions::new())
            .await
            .map_err(|e| BackendError::Denied(format!("cannot get a Google access token: {e}")))?
        {
            CacheableResource::New { data, .. } => data,
            CacheableResource::NotModified => http::HeaderMap::new(),
        };
        request
            .headers(headers)
            .send()
            .await
            .map_err(|e| BackendError::Other(format!("cannot reach GCS at {}: {e}", self.endpoint)))
    }

    /// The object's current generation, `None` when it does not exist.
    async fn generation(&self, key: &str) -> Result<Option<String>, BackendError> {
        let http = &self.clients().await?.http;
        let response = self.send(http.get(self.object_url(key))).await?;
        match response.status().as_u16() {
            200 => {
                let body: serde_json::Value = response.json().await.map_err(|e| {
                    BackendError::Other(format!("unreadable object metadata from GCS: {e}"))
                })?;
                // The JSON API sends int64 as strings.
                let generation = match &body["generation"] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(BackendError::Other(
                            "GCS object metadata without a generation".to_string(),
                        ));
                    }
                };
                Ok(Some(generation))
            }
            404 => {
                self.check_bucket().await?;
                Ok(None)
            }
            _ => Err(status_error(response).await),
        }
    }

    /// After a 404: `NoBucket` when the bucket is what is missing, else `Ok`.
    async fn check_bucket(&self) -> Result<(), BackendError> {
        let http = &self.clients().await?.http;
        let url = format!("{}/storage/v1/b/{}", self.endpoint, encode(&self.bucket));
        let response = self.send(http.get(url)).await?;
        match response.status().as_u16() {
            404 => Err(BackendError::NoBucket(format!("gs://{}", self.bucket))),
            // Allowed to use objects but not to read bucket metadata (roles/storage.objectAdmin
            // lacks storage.buckets.get): trust the 404 the object read got.
            s if (200..300).contains(&s) || s == 401 || s == 403 => Ok(()),
            _ => Err(status_error(response).await),
        }
    }

    async fn get_object(&self, key: &str) -> Result<Option<Object>, BackendError> {
        let storage = &self.clients().await?.storage;
        let mut response = match storage.read_object(self.bucket_path(), key).send().await {
            Ok(response) => response,
            Err(e) if e.http_status_code() == Some(404) => {
                self.check_bucket().await?;
                return Ok(None);
            }
            Err(e) => return Err(sdk_error(&e, &self.endpoint)),
        };
        let version = response.object().generation.to_string();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| sdk_error(&e, &self.endpoint))?);
        }
        Ok(Some(Object { bytes, version }))
    }

    async fn put_object(
        &self,
        key: &str,
        bytes: Vec<u8>,
        precondition: Precondition<'_>,
    ) -> Result<String, BackendError> {
        let storage = &self.clients().await?.storage;
        let write = storage
            .write_object(self.bucket_path(), key, bytes::Bytes::from(bytes))
            .set_content_type("application/json")
            // Always one multipart request: the emulator checks preconditions on no other kind,
            // and state documents are far below any size where resumable uploads pay off.
            .with_resumable_upload_threshold(usize::MAX);
        let write = match precondition {
            Precondition::Absent => write.set_if_generation_match(0_i64),
            Precondition::Matches(version) => {
                let generation: i64 = version.parse().map_err(|_| {
                    BackendError::Other(format!(
                        "`{version}` is not a GCS generation; the state was read from another \
                         kind of store"
                    ))
                })?;
                write.set_if_generation_match(generation)
            }
            Precondition::None => write,
        };
        match write.send_buffered().await {
            Ok(object) => Ok(object.generation.to_string()),
            Err(e) if e.http_status_code() == Some(412) => Err(BackendError::PreconditionFailed),
            Err(e) if e.http_status_code() == Some(404) => {
                Err(BackendError::NoBucket(format!("gs://{}", self.bucket)))
            }
            Err(e) => Err(sdk_error(&e, &self.endpoint)),
        }
    }

    async fn delete_object(
        &self,
        key: &str,
        precondition: Precondition<'_>,
    ) -> Result<(), BackendError> {
        let mut url = self.object_url(key);
        match precondition {
            Precondition::None => {}
            Precondition::Absent => {
                return match self.generation(key).await? {
                    Some(_) => Err(BackendError::PreconditionFailed),
                    None => Ok(()),
                };
            }
            Precondition::Matches(version) => {
                // Real GCS honours `ifGenerationMatch` on a delete; fake-gcs-server ignores it,
                // so check first as well (the seam allows two steps).
                match self.generation(key).await? {
                    None => return Ok(()),
                    Some(current) if current != version => {
                        return Err(BackendError::PreconditionFailed);
                    }
                    Some(_) => {}
                }
                url.push_str("?ifGenerationMatch=");
                url.push_str(version);
            }
        }
        let http = &self.clients().await?.http;
        let response = self.send(http.delete(url)).await?;
        match response.status().as_u16() {
            s if (200..300).contains(&s) => Ok(()),
            404 => Ok(()),
            412 => Err(BackendError::PreconditionFailed),
            _ => Err(status_error(response).await),
        }
    }
}

impl Backend for GcsBackend {
    fn url(&self, key: &str) -> String {
        format!("gs://{}/{key}", self.bucket)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>, BackendError>> {
        Box::pin(self.get_object(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(self.put_object(key, bytes, precondition))
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.delete_object(key, precondition))
    }
}

/// The JSON API root for a `STORAGE_EMULATOR_HOST` value, and whether it is an emulator.
fn endpoint(emulator_host: Option<&str>) -> (String, bool) {
    match emulator_host
        .map(|v| v.trim().trim_end_matches('/'))
        .filter(|v| !v.is_empty())
    {
        Some(host) if host.contains("://") => (host.to_string(), true),
        // The Go and Python clients accept a bare `host:port`; so does flotilla.
        Some(host) => (format!("http://{host}"), true),
        None => (GOOGLE_ENDPOINT.to_string(), false),
    }
}

/// Maps a Storage client error: refused credentials, or anything else with its message.
fn sdk_error(e: &google_cloud_storage::Error, endpoint: &str) -> BackendError {
    if e.is_authentication() {
        return BackendError::Denied(format!(
            "no usable Google credentials ({e}); run `gcloud auth application-default login`, \
             set GOOGLE_APPLICATION_CREDENTIALS, or point STORAGE_EMULATOR_HOST at an emulator"
        ));
    }
    match e.http_status_code() {
        Some(401 | 403) => BackendError::Denied(format!("GCS refused the request ({e})")),
        Some(_) => BackendError::Other(format!("GCS answered: {e}")),
        None => BackendError::Other(format!("GCS at {endpoint} failed: {e}")),
    }
}

/// Maps an unexpected JSON API answer, keeping the service's own message.
async fn status_error(response: reqwest::Response) -> BackendError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(200).collect());
    match status.as_u16() {
        401 | 403 => BackendError::Denied(format!("GCS answered {status}: {message}")),
        _ => BackendError::Other(format!("GCS answered {status}: {message}")),
    }
}

/// Percent-encodes one path segment of a JSON API URL (object names may hold `/`).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_an_object() {
        assert_eq!(
            parse_url("gs://acme-infra/gpu/prod.json").unwrap(),
            ("acme-infra".to_string(), "gpu/prod.json".to_string())
        );
        assert_eq!(
            parse_url("GS://b/o").unwrap(),
            ("b".to_string(), "o".to_string())
        );
        for (url, why) in [
            ("gs://bucket", "no object name"),
            ("gs://bucket/", "object name is empty"),
            ("gs://bucket/dir/", "object name is empty"),
            ("gs:///key", "bucket name is empty"),
            ("gs://Bad_Bucket/key", "not a valid bucket name"),
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains("gs://BUCKET/path/to/state.json"), "{url}: {e}");
        }
    }

    #[test]
    fn open_maps_gs_urls_to_an_object_store() {
        let store = crate::open("gs://acme-infra/gpu/prod.json").unwrap();
        assert_eq!(store.url(), "gs://acme-infra/gpu/prod.json");
        let e = crate::open("gs://acme-infra").err().unwrap().to_string();
        assert!(e.contains("no object name"), "{e}");
    }

    #[test]
    fn storage_emulator_host_takes_a_url_or_host_and_port() {
        let emulator = |url: &str| (url.to_string(), true);
        assert_eq!(
            endpoint(Some("http://127.0.0.1:4443/")),
            emulator("http://127.0.0.1:4443")
        );
        assert_eq!(
            endpoint(Some("127.0.0.1:4443")),
            emulator("http://127.0.0.1:4443")
        );
        assert_eq!(endpoint(Some(" ")), (GOOGLE_ENDPOINT.to_string(), false));
        assert_eq!(endpoint(None), (GOOGLE_ENDPOINT.to_string(), false));
    }

    #[test]
    fn object_names_are_encoded_as_one_segment() {
        assert_eq!(encode("gpu/prod.json"), "gpu%2Fprod.json");
        assert_eq!(encode("a b+c"), "a%20b%2Bc");
        assert_eq!(encode("é"), "%C3%A9");
    }
}
