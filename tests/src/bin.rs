//! The `flotilla` binary under test.
//!
//! `env!("CARGO_BIN_EXE_flotilla")` only exists inside the `cli` crate, so the end-to-end tests
//! here find the binary beside their own executable: a test runs from `target/<profile>/deps/`
//! and the binary is `target/<profile>/flotilla`. `cargo test --workspace` (what `scripts/test`
//! runs) builds it; `cargo test -p flotilla-tests` alone does not, so a missing binary fails
//! with a message saying so. `FLOTILLA_BIN` overrides the path.

use std::path::PathBuf;

/// The path of the `flotilla` binary. Panics, saying how to build it, when it is missing.
pub fn flotilla() -> PathBuf {
    if let Some(path) = std::env::var_os("FLOTILLA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("flotilla{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} does not exist: build it with `cargo build -p flotilla` or run the tests with \
         `cargo test --workspace` / `scripts/test`, which build it",
        path.display()
    );
    path
}
