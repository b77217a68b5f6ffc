//! Reading catalog CSV files.

use super::Offer;

/// A catalog file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog `{path}`")]
    Io {
        /// The catalog file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A row or the header is malformed.
    #[error("{origin}:{line}: {message}")]
    Malformed {
        /// The catalog file (or `embedded snapshot`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Vec<Offer>, CatalogError> {
    todo!("{text}{origin}")
}
