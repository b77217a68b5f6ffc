//! `s3://BUCKET/KEY`: the [`Backend`] for Amazon S3 (and S3-compatible servers), through
//! `aws-sdk-s3`.
//!
//! Credentials and region come from the standard AWS chain (environment, profiles, SSO,
//! instance roles) via `aws-config`. The URL may add `?region=R` (the bucket's region, when the
//! chain's default is another) and `&kms_key_id=ARN` (encrypt the state, its backup and its
//! lock with that KMS key, `aws:kms`). `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` point the
//! client at another server (moto in the tests, MinIO); path-style addressing is then used,
//! since such servers rarely resolve `BUCKET.host` names.
//!
//! S3's conditional writes carry the compare-and-swap: `If-None-Match: *` creates only a new
//! object, `If-Match: ETAG` replaces only the version that was read. A failed precondition
//! comes back as HTTP 412 `PreconditionFailed` (not a modelled error: it is matched by code and
//! status), or 409 `ConditionalRequestConflict` while another conditional write to the key is in
//! flight; both mean someone else won.

use crate::object::{Backend, BackendError, Object, Precondition};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use flotilla_core::state::{BoxFuture, StateError};
use tokio::sync::OnceCell;

/// The region used when neither the URL nor the AWS chain names one. S3 buckets live in a
/// region; us-east-1 answers for the global endpoint.
const FALLBACK_REGION: &str = "us-east-1";

/// An S3 bucket, as one state's storage.
pub(crate) struct S3Backend {
    bucket: String,
    region: Option<String>,
    kms_key_id: Option<String>,
    /// Built on first use: loading the AWS chain is async and may read files, and `open` must
    /// stay cheap and offline.
    client: OnceCell<aws_sdk_s3::Client>,
}

/// What an `s3://` URL names.
#[derive(Debug, PartialEq, Eq)]
struct S3Url {
    bucket: String,
    key: String,
    region: Option<String>,
    kms_key_id: Option<String>,
}

fn parse(url: &str) -> Result<S3Url, StateError> {
    let refuse = |message: String| StateError::Storage {
        url: url.to_string(),
        message,
        source: None,
    };
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| refuse("not an s3:// URL".to_string()))?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
        return Err(refuse(
            "an S3 state URL is s3://BUCKET/KEY, with the object's key after the bucket (for \
             example s3://acme-infra/gpu/prod.json)"
                .to_string(),
        ));
    }
    let mut parsed = S3Url {
        bucket: bucket.to_string(),
        key: key.to_string(),
        region: None,
        kms_key_id: None,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::percent_decode(value)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| refuse(format!("`{name}` in the URL needs a value")))?;
        match name {
            "region" => parsed.region = Some(value),
            "kms_key_id" => parsed.kms_key_id = Some(value),
            other => {
                return Err(refuse(format!(
                    "unknown option `{other}` in the URL; an s3:// state takes `region` and \
                     `kms_key_id` (s3://BUCKET/KEY?region=us-west-2&kms_key_id=ARN)"
                )));
            }
        }
    }
    Ok(parsed)
}

/// The object key an `s3://` URL names.
pub(crate) fn key_of(url: &str) -> Result<String, StateError> {
    Ok(parse(url)?.key)
}

impl S3Backend {
    /// The backend for the bucket of `url`; checks the URL only, contacts nothing.
    pub(crate) fn open(url: &str) -> Result<S3Backend, StateError> {
        let parsed = parse(url)?;
        Ok(S3Backend {
            bucket: parsed.bucket,
            region: parsed.region,
            kms_key_id: parsed.kms_key_id,
            client: OnceCell::new(),
        })
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let sdk = loader.load().await;
                let mut config = aws_sdk_s3::config::Builder::from(&sdk);
                if sdk.region().is_none() {
                    config = config.region(aws_config::Region::new(FALLBACK_REGION));
                }
                let s3_endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                    .ok()
                    .filter(|e| !e.is_empty());
                if let Some(endpoint) = &s3_endpoint {
                    config = config.endpoint_url(endpoint);
                }
                if s3_endpoint.is_some() || sdk.endpoint_url().is_some() {
                    config = config.force_path_style(true);
                }
                aws_sdk_s3::Client::from_conf(config.build())
            })
            .await
    }

    /// Maps an SDK error to what the store acts on. With `missing_key_lost`, a 404 `NoSuchKey`
    /// means someone else won (an `If-Match` write on an object deleted since it was read).
    fn classify<E>(
        &self,
        err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
        missing_key_lost: bool,
    ) -> BackendError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        match (err.code(), status) {
            (Some("PreconditionFailed" | "ConditionalRequestConflict"), _) | (_, Some(412)) => {
                BackendError::PreconditionFailed
            }
            (Some("NoSuchBucket"), _) => BackendError::NoBucket(format!("s3://{}", self.bucket)),
            (Some("NoSuchKey"), _) if missing_key_lost => BackendError::PreconditionFailed,
            (code, Some(401 | 403)) => BackendError::Denied(format!(
                "S3 refused access to bucket `{}` ({})",
                self.bucket,
                code.unwrap_or("HTTP 403")
            )),
            _ => BackendError::Other(format!("S3: {}", DisplayErrorContext(err))),
        }
    }
}

impl Backend for S3Backend {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>, BackendError>> {
        Box::pin(async move {
            let client = self.client().await;
            let out = match client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    if e.as_service_error().is_some_and(
                        aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                    ) {
                        return Ok(None);
                    }
                    return Err(self.classify(&e, false));
                }
            };
            let version = out.e_tag().unwrap_or_default().to_string();
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| BackendError::Other(format!("S3: reading {key}: {e}")))?
                .into_bytes()
                .to_vec();
            Ok(Some(Object { bytes, version }))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let client = self.client().await;
            let mut request = client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(bytes));
            request = match precondition {
                Precondition::Absent => request.if_none_match("*"),
                Precondition::Matches(etag) => request.if_match(etag),
                Precondition::None => request,
            };
            if let Some(kms) = &self.kms_key_id {
                request = request
                    .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                    .ssekms_key_id(kms);
            }
            let out = request.send().await.map_err(|e| self.classify(&e, true))?;
            Ok(out.e_tag().unwrap_or_default().to_string())
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let client = self.client().await;
            let mut request = client.delete_object().bucket(&self.bucket).key(key);
            if let Precondition::Matches(etag) = precondition {
                request = request.if_match(etag);
            }
            match request.send().await {
                Ok(_) => Ok(()),
                // Already gone (S3 answers a conditional delete of a missing key so): not an
                // error.
                Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
                Err(e) => Err(self.classify(&e, false)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_bucket_key_and_options() {
        assert_eq!(
            parse("s3://acme/gpu/prod.json").unwrap(),
            S3Url {
                bucket: "acme".into(),
                key: "gpu/prod.json".into(),
                region: None,
                kms_key_id: None
            }
        );
        let p = parse("s3://acme/s.json?region=eu-west-1&kms_key_id=arn%3Aaws%3Akms%3Ax").unwrap();
        assert_eq!(p.region.as_deref(), Some("eu-west-1"));
        assert_eq!(p.kms_key_id.as_deref(), Some("arn:aws:kms:x"));
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        for bad in ["s3://acme", "s3://acme/", "s3:///key", "s3://acme/dir/"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("s3://BUCKET/KEY"), "{bad}: {e}");
        }
        let e = parse("s3://acme/k?colour=red").unwrap_err().to_string();
        assert!(e.contains("unknown option `colour`"), "{e}");
        let e = parse("s3://acme/k?region=").unwrap_err().to_string();
        assert!(e.contains("`region` in the URL needs a value"), "{e}");
    }
}
