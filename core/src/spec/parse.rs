//! The parsers behind [`super::parse_gpu`] and friends.

use super::{GpuSpec, Memory, Range};
use std::fmt;

/// A grammar error, with where it is in the parsed string so `config` can point at the column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// What is wrong, lowercase, naming the offending token: ``unknown memory unit `GiB` ``.
    pub message: String,
    /// Byte offset of the offending token within the parsed string.
    pub offset: usize,
    /// Byte length of the offending token (at least 1 where the string is non-empty).
    pub len: usize,
    /// What to write instead, where one helps: ``use `MB`, `GB` or `TB` ``.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

pub(super) fn count_range(s: &str) -> Result<Range<u32>, SpecError> {
    todo!("{s}")
}

pub(super) fn memory_range(s: &str) -> Result<Range<Memory>, SpecError> {
    todo!("{s}")
}

pub(super) fn memory(s: &str) -> Result<Memory, SpecError> {
    todo!("{s}")
}

pub(super) fn gpu(s: &str) -> Result<GpuSpec, SpecError> {
    todo!("{s}")
}
