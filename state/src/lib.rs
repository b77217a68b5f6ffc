//! flotilla's state stores: where the state document lives (a local file, `s3://`, `gs://`,
//! `az://`), each write atomic and conditional (compare-and-swap), each operation under a
//! lock. Implements `flotilla_core::state::StateStore`.
//!
//! The engine only knows the [`StateStore`] port; this crate maps the user's `--state` value
//! (or the fleet file's `state { url = … }`) to a concrete store with [`open`], so that the
//! binary picks a backend at run time and the rest of flotilla never touches a file or a
//! bucket directly.

mod local;
mod object;
mod s3;
mod store;
// ---- GCS and Azure Blob backends (helper B): `mod gcs;` and `mod azure;` go here. ----
mod azure;
mod gcs;

pub use local::LocalStore;

use flotilla_core::state::{StateError, StateStore};
use std::path::PathBuf;

/// Where the state lives when neither `--state` nor the fleet file's `state { url = … }` says.
pub const DEFAULT_PATH: &str = "./flotilla.state.json";

/// Opens the state store that `url` names: a plain path or a `file://` URL is a
/// [`LocalStore`]; `s3://BUCKET/KEY` an object store on S3 (`gs://` and `az://` likewise).
///
/// Nothing is read, created or locked here, and no network call is made: a missing file or
/// object is simply an empty state until the first write.
pub fn open(url: &str) -> Result<Box<dyn StateStore>, StateError> {
    let scheme = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "s3" => Ok(Box::new(store::ObjectStore::new(
            s3::S3Backend::open(url)?,
            s3::key_of(url)?,
        ))),
        "gs" => gcs::open(url),
        "az" => azure::open(url),
        _ => Ok(Box::new(LocalStore::new(local_path(url)?))),
    }
}

/// The local path that `url` names, or why it names none.
fn local_path(url: &str) -> Result<PathBuf, StateError> {
    let refuse = |message: String| StateError::Storage {
        url: url.to_string(),
        message,
        source: None,
    };
    if url.trim().is_empty() {
        return Err(refuse(format!(
            "the state location is empty; give a file path such as {DEFAULT_PATH}"
        )));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(PathBuf::from(url));
    };
    // A scheme is letters, digits, `+`, `-`, `.`, starting with a letter (RFC 3986). Anything
    // else before `://` is part of a (strange) path.
    let is_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        return Ok(PathBuf::from(url));
    }
    let lower = scheme.to_ascii_lowercase();
    if lower == "file" {
        // `file:///abs/path` or `file://localhost/abs/path`; a host other than localhost
        // cannot be reached as a local file.
        let path = if rest.starts_with('/') {
            rest
        } else if rest.starts_with("localhost/") {
            &rest["localhost".len()..]
        } else {
            return Err(refuse(
                "a file:// URL needs an absolute path (file:///path/to/flotilla.state.json); \
                 for a relative path give the plain path instead"
                    .to_string(),
            ));
        };
        let decoded = percent_decode(path).ok_or_else(|| {
            refuse(
                "the file:// URL has an invalid %-escape; give the plain path instead".to_string(),
            )
        })?;
        return Ok(PathBuf::from(decoded));
    }
    Err(refuse(format!(
        "unknown state backend {scheme}://; use a local path (for example {DEFAULT_PATH}) or a \
         file:// URL"
    )))
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(url: &str) -> String {
        local_path(url).unwrap_err().to_string()
    }

    #[test]
    fn plain_paths_are_local() {
        assert_eq!(
            local_path("./flotilla.state.json").unwrap(),
            PathBuf::from("./flotilla.state.json")
        );
        assert_eq!(
            local_path("/tmp/s.json").unwrap(),
            PathBuf::from("/tmp/s.json")
        );
        assert_eq!(
            local_path("C:\\x\\s.json").unwrap(),
            PathBuf::from("C:\\x\\s.json")
        );
    }

    #[test]
    fn file_urls_are_local() {
        assert_eq!(
            local_path("file:///tmp/s.json").unwrap(),
            PathBuf::from("/tmp/s.json")
        );
        assert_eq!(
            local_path("file://localhost/tmp/my%20state.json").unwrap(),
            PathBuf::from("/tmp/my state.json")
        );
        assert!(err("file://relative/s.json").contains("absolute path"));
        assert!(err("file:///tmp/%zz").contains("%-escape"));
    }

    #[test]
    fn unknown_schemes_and_empty_are_refused() {
        assert!(err("http://example.com/s.json").contains("unknown state backend http://"));
        assert!(err("  ").contains("empty"));
    }

    #[test]
    fn s3_urls_open_an_object_store_without_a_network_call() {
        let store = open("s3://acme-infra/gpu/prod.json?region=eu-west-1").unwrap();
        assert_eq!(store.url(), "s3://acme-infra/gpu/prod.json");
        assert!(open("S3://acme-infra/gpu/prod.json").is_ok());
        let e = open("s3://acme-infra").err().unwrap().to_string();
        assert!(e.contains("s3://BUCKET/KEY"), "{e}");
    }

    #[test]
    fn open_maps_to_a_local_store() {
        let store = open("file:///tmp/x/flotilla.state.json").unwrap();
        assert_eq!(store.url(), "/tmp/x/flotilla.state.json");
    }
}
