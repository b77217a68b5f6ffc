//! `az://ACCOUNT/CONTAINER/BLOB`: state in Azure Blob Storage, as a [`Backend`] for the generic
//! object store.
//!
//! Every write is a block-blob upload conditional on the ETag read (`If-Match`), or on there
//! being no blob yet (`If-None-Match: *`, which Azure and Azurite refuse with 409
//! `BlobAlreadyExists` rather than 412), so it is a compare-and-swap like S3's and GCS's.
//!
//! The lock is the generic lock object (`BLOB.lock`, created with `If-None-Match: *` and renewed
//! with `If-Match`), not a blob lease: a lease lives at most 60 s unless renewed, or forever,
//! and only its holder (who knows the lease id) can write or delete the leased blob, so
//! `force-unlock ID` from another machine would need to break leases and the lock's holder,
//! operation and heartbeat would still need a blob of their own. The lock object gives the same
//! mutual exclusion through the same conditional writes, with one code path for all clouds.
//!
//! Credentials: `AZURE_STORAGE_CONNECTION_STRING` when set (Azurite, or an account key), else
//! azure_identity's default chain (environment, managed identity, Azure CLI).

use crate::object::{Backend, BackendError, Object, Precondition};
use azure_core::error::ErrorKind;
use azure_core::request_options::IfMatchCondition;
use azure_storage::{CloudLocation, ConnectionString, StorageCredentials};
use azure_storage_blobs::prelude::{BlobContentType, ClientBuilder, ContainerClient};
use flotilla_core::state::{BoxFuture, StateError, StateStore};
use futures::StreamExt;

/// The variable holding a storage connection string (Azurite's, or an account key's).
pub(crate) const CONNECTION_STRING_VAR: &str = "AZURE_STORAGE_CONNECTION_STRING";

/// The parts of an `az://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobUrl {
    /// Storage account name.
    pub(crate) account: String,
    /// Container name.
    pub(crate) container: String,
    /// Blob name (may hold `/`).
    pub(crate) blob: String,
}

/// Splits `az://ACCOUNT/CONTAINER/BLOB`, or says what is wrong.
pub(crate) fn parse_url(url: &str) -> Result<BlobUrl, StateError> {
    let refuse = |why: &str| StateError::Storage {
        url: url.to_string(),
        message: format!(
            "{why}; an Azure Blob state URL looks like az://ACCOUNT/CONTAINER/path/to/state.json"
        ),
        source: None,
    };
    let rest = url
        .get(..5)
        .filter(|s| s.eq_ignore_ascii_case("az://"))
        .map(|_| &url[5..])
        .ok_or_else(|| refuse("not an az:// URL"))?;
    let mut parts = rest.splitn(3, '/');
    let account = parts.next().unwrap_or_default();
    let container = parts.next().unwrap_or_default();
    let blob = parts.next().unwrap_or_default();
    if account.is_empty() {
        return Err(refuse("the storage account name is empty"));
    }
    if !account
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(refuse(&format!(
            "`{account}` is not a valid storage account name (lowercase letters and digits)"
        )));
    }
    if container.is_empty() {
        return Err(refuse("the container name is missing"));
    }
    if !container
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(refuse(&format!(
            "`{container}` is not a valid container name (lowercase letters, digits, `-`)"
        )));
    }
    if blob.is_empty() || blob.ends_with('/') {
        return Err(refuse("the blob name is missing"));
    }
    Ok(BlobUrl {
        account: account.to_string(),
        container: container.to_string(),
        blob: blob.to_string(),
    })
}

/// Opens `az://ACCOUNT/CONTAINER/BLOB` as a state store. Credentials are looked up here, but
/// nothing is contacted until the first call.
pub(crate) fn open(url: &str) -> Result<Box<dyn StateStore>, StateError> {
    let parsed = parse_url(url)?;
    let blob = parsed.blob.clone();
    let backend = AzureBackend::new(&parsed).map_err(|message| StateError::Storage {
        url: url.to_string(),
        message,
        source: None,
    })?;
    Ok(Box::new(crate::store::ObjectStore::new(backend, blob)))
}

/// One container of one storage account.
pub(crate) struct AzureBackend {
    account: String,
    container: String,
    client: ContainerClient,
}

impl AzureBackend {
    /// A backend for the URL's container, with credentials from the connection string or the
    /// default chain; `Err` says why none could be set up.
    pub(crate) fn new(url: &BlobUrl) -> Result<AzureBackend, String> {
        let (location, credentials) = match std::env::var(CONNECTION_STRING_VAR) {
            Ok(cs) if !cs.trim().is_empty() => from_connection_string(&cs, &url.account)?,
            _ => {
                let credential = azure_identity::create_default_credential().map_err(|e| {
                    format!(
                        "no Azure credentials found ({e}); run `az login`, set AZURE_CLIENT_ID / \
                         AZURE_TENANT_ID / AZURE_CLIENT_SECRET, or set \
                         {CONNECTION_STRING_VAR}"
                    )
                })?;
                (
                    CloudLocation::Public {
                        account: url.account.clone(),
                    },
                    StorageCredentials::token_credential(credential),
                )
            }
        };
        let client =
            ClientBuilder::with_location(location, credentials).container_client(&url.container);
        Ok(AzureBackend {
            account: url.account.clone(),
            container: url.container.clone(),
            client,
        })
    }

    async fn get_blob(&self, key: &str) -> Result<Option<Object>, BackendError> {
        let mut stream = self.client.blob_client(key).get().into_stream();
        let mut bytes = Vec::new();
        let mut version: Option<String> = None;
        // A blob comes in chunks (one for a state document); each names the ETag it belongs to.
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => match status(&e) {
                    Some((404, code)) if code != "ContainerNotFound" && version.is_none() => {
                        return Ok(None);
                    }
                    _ => return Err(self.error(&e)),
                },
            };
            let etag = chunk.blob.properties.etag.to_string();
            if version.as_ref().is_some_and(|v| *v != etag) {
                // Replaced between two chunks: read as a lost race, like any other.
                return Err(BackendError::PreconditionFailed);
            }
            version = Some(etag);
            let data = chunk
                .data
                .collect()
                .await
                .map_err(|e| BackendError::Other(format!("reading the blob failed: {e}")))?;
            bytes.extend_from_slice(&data);
        }
        Ok(version.map(|version| Object { bytes, version }))
    }

    async fn put_blob(
        &self,
        key: &str,
        bytes: Vec<u8>,
        precondition: Precondition<'_>,
    ) -> Result<String, BackendError> {
        let put = self
            .client
            .blob_client(key)
            .put_block_blob(bytes)
            .content_type(BlobContentType::from("application/json"));
        let put = match precondition {
            Precondition::Absent => put.if_match(IfMatchCondition::NotMatch("*".to_string())),
            Precondition::Matches(etag) => put.if_match(IfMatchCondition::Match(etag.to_string())),
            Precondition::None => put,
        };
        match put.await {
            Ok(response) => Ok(response.etag),
            Err(e) => match status(&e) {
                // 409 BlobAlreadyExists answers `If-None-Match: *`; 412 a stale `If-Match`;
                // a 404 BlobNotFound an `If-Match` on a blob deleted meanwhile.
                Some((409 | 412, _)) => Err(BackendError::PreconditionFailed),
                Some((404, code)) if code != "ContainerNotFound" => {
                    Err(BackendError::PreconditionFailed)
                }
                _ => Err(self.error(&e)),
            },
        }
    }

    async fn delete_blob(
        &self,
        key: &str,
        precondition: Precondition<'_>,
    ) -> Result<(), BackendError> {
        let delete = self.client.blob_client(key).delete();
        let delete = match precondition {
            Precondition::Matches(etag) => {
                delete.if_match(IfMatchCondition::Match(etag.to_string()))
            }
            Precondition::None => delete,
            Precondition::Absent => {
                // "Delete only if it does not exist" deletes nothing; say whether it held.
                return match self.get_blob(key).await? {
                    Some(_) => Err(BackendError::PreconditionFailed),
                    None => Ok(()),
                };
            }
        };
        match delete.await {
            Ok(_) => Ok(()),
            Err(e) => match status(&e) {
                Some((412, _)) => Err(BackendError::PreconditionFailed),
                Some((404, code)) if code != "ContainerNotFound" => Ok(()),
                _ => Err(self.error(&e)),
            },
        }
    }

    /// Maps an SDK error: a missing container, refused credentials, or anything else.
    fn error(&self, e: &azure_core::Error) -> BackendError {
        match status(e) {
            Some((404, code)) if code == "ContainerNotFound" => {
                BackendError::NoBucket(format!("az://{}/{}", self.account, self.container))
            }
            Some((401 | 403, code)) => BackendError::Denied(format!(
                "Azure Storage refused the request ({code}) on account `{}`",
                self.account
            )),
            Some((status, code)) => {
                BackendError::Other(format!("Azure Storage answered {status} {code}"))
            }
            None if matches!(e.kind(), ErrorKind::Credential) => BackendError::Denied(format!(
                "no usable Azure credentials ({}); run `az login`, set AZURE_CLIENT_ID / \
                 AZURE_TENANT_ID / AZURE_CLIENT_SECRET, or set {CONNECTION_STRING_VAR}",
                chain(e)
            )),
            None => BackendError::Other(format!("Azure Storage request failed: {}", chain(e))),
        }
    }
}

impl Backend for AzureBackend {
    fn url(&self, key: &str) -> String {
        format!("az://{}/{}/{key}", self.account, self.container)
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Object>, BackendError>> {
        Box::pin(self.get_blob(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(self.put_blob(key, bytes, precondition))
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        precondition: Precondition<'a>,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(self.delete_blob(key, precondition))
    }
}

/// The HTTP status and Azure error code of a service error; `None` for other failures.
fn status(e: &azure_core::Error) -> Option<(u16, String)> {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            Some((u16::from(*status), error_code.clone().unwrap_or_default()))
        }
        _ => None,
    }
}

/// An error with its causes, `: `-separated: the SDK's own message is often only a wrapper
/// ("non-io error occurred which will not be retried").
fn chain(e: &azure_core::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The location and credentials a connection string gives, checked against the URL's
/// account.
fn from_connection_string(
    cs: &str,
    account: &str,
) -> Result<(CloudLocation, StorageCredentials), String> {
    let bad = |why: String| format!("{CONNECTION_STRING_VAR} is not usable: {why}");
    let parsed = ConnectionString::new(cs).map_err(|e| bad(e.to_string()))?;
    let credentials = parsed
        .storage_credentials()
        .map_err(|e| bad(e.to_string()))?;
    if parsed.use_development_storage == Some(true) && parsed.blob_endpoint.is_none() {
        return Ok((
            CloudLocation::Emulator {
                address: "127.0.0.1".to_string(),
                port: 10000,
            },
            credentials,
        ));
    }
    let named = parsed.account_name.unwrap_or_default();
    if !named.is_empty() && named != account {
        return Err(bad(format!(
            "it is for account `{named}`, but the state URL names account `{account}`; make \
             them agree"
        )));
    }
    let location = match parsed.blob_endpoint {
        Some(endpoint) => CloudLocation::Custom {
            account: account.to_string(),
            uri: endpoint.trim_end_matches('/').to_string(),
        },
        None => CloudLocation::Public {
            account: account.to_string(),
        },
    };
    Ok((location, credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_account_container_and_blob() {
        assert_eq!(
            parse_url("az://acme/tfstate/gpu/prod.json").unwrap(),
            BlobUrl {
                account: "acme".into(),
                container: "tfstate".into(),
                blob: "gpu/prod.json".into(),
            }
        );
        for (url, why) in [
            ("az://acme", "container name is missing"),
            ("az://acme/c", "blob name is missing"),
            ("az://acme/c/", "blob name is missing"),
            ("az:///c/b", "account name is empty"),
            ("az://Acme/c/b", "not a valid storage account name"),
            ("az://acme/C_1/b", "not a valid container name"),
        ] {
            let e = parse_url(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains("az://ACCOUNT/CONTAINER/"), "{url}: {e}");
        }
    }

    #[test]
    fn open_refuses_bad_az_urls_before_looking_for_credentials() {
        let e = crate::open("AZ://acme/c").err().unwrap().to_string();
        assert!(e.contains("blob name is missing"), "{e}");
    }

    #[test]
    fn connection_strings_must_name_the_urls_account() {
        let azurite = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
            AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
            BlobEndpoint=http://127.0.0.1:10123/devstoreaccount1;";
        let (location, _) = from_connection_string(azurite, "devstoreaccount1").unwrap();
        assert!(
            matches!(&location, CloudLocation::Custom { uri, .. } if uri == "http://127.0.0.1:10123/devstoreaccount1"),
            "{location:?}"
        );
        let e = from_connection_string(azurite, "acme").unwrap_err();
        assert!(e.contains("account `devstoreaccount1`"), "{e}");
        assert!(e.contains("names account `acme`"), "{e}");
        assert!(from_connection_string("garbage", "acme").is_err());
    }
}
