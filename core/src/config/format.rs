//! Canonical formatting of fleet files (`flotilla fmt`), as `terraform fmt` does it.

/// The canonical form of one fleet file; comments are kept. Idempotent:
/// `format(&format(s)?)? == format(s)?`. Refuses text that does not parse.
pub fn format(text: &str) -> Result<String, String> {
    todo!("{text}")
}
