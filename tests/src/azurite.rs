//! Azurite, as the tests see it: its connection string (`AZURE_STORAGE_CONNECTION_STRING`,
//! exported by `scripts/test`), and the few blob calls a test makes behind flotilla's back —
//! create a container, plant or read a blob — through the same `azure_storage_blobs` client
//! flotilla uses, since Azurite checks Shared Key signatures.
//!
//! Tests run in parallel against one Azurite: each makes its own container
//! ([`Azurite::container`], or [`AzureContainer`] for the tests written once for every store).

use crate::state_suite::Bucket;
use azure_storage::{CloudLocation, ConnectionString};
use azure_storage_blobs::prelude::{ClientBuilder, ContainerClient};
use futures::StreamExt;
use std::future::Future;

/// Why a test cannot run: said loudly, never skipped.
const NOT_RUNNING: &str = "Azurite is not running: run these tests with `scripts/test` (it \
     installs azurite, starts azurite-blob and exports AZURE_STORAGE_CONNECTION_STRING), or \
     start it yourself and export AZURE_STORAGE_CONNECTION_STRING with its BlobEndpoint";

/// The running Azurite (blob service).
#[derive(Debug, Clone)]
pub struct Azurite {
    /// The storage account (`devstoreaccount1`).
    pub account: String,
    builder: ClientBuilder,
}

impl Azurite {
    /// The server `scripts/test` started. Panics, saying what to do, when it is not there.
    pub async fn get() -> Azurite {
        let cs = std::env::var("AZURE_STORAGE_CONNECTION_STRING").unwrap_or_default();
        let parsed = ConnectionString::new(&cs)
            .unwrap_or_else(|e| panic!("{NOT_RUNNING} (the connection string is unusable: {e})"));
        let (Some(account), Some(endpoint)) = (parsed.account_name, parsed.blob_endpoint) else {
            panic!("{NOT_RUNNING} (no AccountName or BlobEndpoint in {cs:?})");
        };
        let credentials = parsed
            .storage_credentials()
            .unwrap_or_else(|e| panic!("{NOT_RUNNING}: {e}"));
        let builder = ClientBuilder::with_location(
            CloudLocation::Custom {
                account: account.to_string(),
                uri: endpoint.trim_end_matches('/').to_string(),
            },
            credentials,
        );
        let azurite = Azurite {
            account: account.to_string(),
            builder,
        };
        let mut list = azurite
            .builder
            .clone()
            .blob_service_client()
            .list_containers()
            .into_stream();
        if let Some(Err(e)) = list.next().await {
            panic!("{NOT_RUNNING}: cannot reach {endpoint}: {e}");
        }
        azurite
    }

    /// Creates a container with a fresh name and returns the name.
    pub async fn container(&self) -> String {
        let name = format!("flotilla-{}", uuid::Uuid::new_v4().simple());
        self.client(&name)
            .create()
            .await
            .unwrap_or_else(|e| panic!("creating container {name}: {e}"));
        name
    }

    /// `az://ACCOUNT/CONTAINER/BLOB`.
    pub fn url(&self, container: &str, blob: &str) -> String {
        format!("az://{}/{container}/{blob}", self.account)
    }

    /// Writes `bytes` to `container/blob` unconditionally, as someone other than flotilla would.
    pub async fn put(&self, container: &str, blob: &str, bytes: &str) {
        self.client(container)
            .blob_client(blob)
            .put_block_blob(bytes.as_bytes().to_vec())
            .await
            .unwrap_or_else(|e| panic!("writing {container}/{blob}: {e}"));
    }

    /// The content of `container/blob`, `None` when it does not exist.
    pub async fn get_blob(&self, container: &str, blob: &str) -> Option<String> {
        let client = self.client(container).blob_client(blob);
        if !client
            .exists()
            .await
            .unwrap_or_else(|e| panic!("reading {container}/{blob}: {e}"))
        {
            return None;
        }
        let bytes = client
            .get_content()
            .await
            .unwrap_or_else(|e| panic!("reading {container}/{blob}: {e}"));
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn client(&self, container: &str) -> ContainerClient {
        self.builder.clone().container_client(container)
    }
}

/// A fresh container on Azurite, as the tests written once for every store see it.
#[derive(Debug, Clone)]
pub struct AzureContainer {
    azurite: Azurite,
    /// The container's name.
    pub name: String,
}

impl AzureContainer {
    /// Creates a new, empty container. Panics, saying what to do, when Azurite is not running.
    pub async fn new() -> AzureContainer {
        let azurite = Azurite::get().await;
        let name = azurite.container().await;
        AzureContainer { azurite, name }
    }
}

impl Bucket for AzureContainer {
    fn url(&self, key: &str) -> String {
        self.azurite.url(&self.name, key)
    }

    fn missing_url(&self) -> String {
        self.azurite
            .url(&format!("{}-missing", self.name), "state.json")
    }

    fn put_raw(&self, key: &str, text: &str) -> impl Future<Output = ()> {
        self.azurite.put(&self.name, key, text)
    }

    fn get_raw(&self, key: &str) -> impl Future<Output = Option<String>> {
        self.azurite.get_blob(&self.name, key)
    }
}
