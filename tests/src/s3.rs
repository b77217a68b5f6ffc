//! S3 on moto, as the state tests see it: a client on the harness `scripts/test` started
//! (path-style, as flotilla's own S3 state uses against an endpoint), a fresh bucket per test,
//! and raw reads and writes behind flotilla's back. It is a [`Bucket`], so the tests written
//! once for every store (`tests/tests/state_lock.rs`) run on S3 too.

use crate::moto::Moto;
use crate::state_suite::Bucket;
use aws_sdk_s3::primitives::ByteStream;
use std::future::Future;

/// A bucket of its own on moto's S3.
pub struct S3Bucket {
    client: aws_sdk_s3::Client,
    /// The bucket's name.
    pub name: String,
}

impl S3Bucket {
    /// Creates a new, empty bucket with a unique name. Panics, saying what to do, when moto is
    /// not running.
    pub async fn new() -> S3Bucket {
        let moto = Moto::get();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .load()
            .await;
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        let name = format!(
            "flotilla-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating bucket {name} on moto: {e:?}"));
        S3Bucket { client, name }
    }

    /// `s3://BUCKET/KEY`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Writes `text` to `key` unconditionally.
    pub async fn put(&self, key: &str, text: &str) {
        self.client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(ByteStream::from(text.as_bytes().to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("putting {key}: {e:?}"));
    }

    /// The content of `key`; `None` when there is no such object.
    pub async fn get(&self, key: &str) -> Option<String> {
        match self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let bytes = out.body.collect().await.expect("object body").into_bytes();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            Err(e)
                if e.as_service_error().is_some_and(
                    aws_sdk_s3::operation::get_object::GetObjectError::is_no_such_key,
                ) =>
            {
                None
            }
            Err(e) => panic!("getting {key}: {e:?}"),
        }
    }
}

impl Bucket for S3Bucket {
    fn url(&self, key: &str) -> String {
        S3Bucket::url(self, key)
    }

    fn missing_url(&self) -> String {
        format!("s3://{}-missing/state.json", self.name)
    }

    fn put_raw(&self, key: &str, text: &str) -> impl Future<Output = ()> {
        self.put(key, text)
    }

    fn get_raw(&self, key: &str) -> impl Future<Output = Option<String>> {
        self.get(key)
    }
}
