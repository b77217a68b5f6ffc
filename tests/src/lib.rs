//! End-to-end tests of flotilla against real local servers: moto (EC2, ELBv2, S3), Azurite,
//! fake-gcs-server and sshd, which `scripts/test` installs and starts. The CLI's own tests
//! (which need no server) live in `cli/tests/`.
//!
//! This library is the harness the test files in `tests/tests/` share: [`moto`] reaches the
//! moto harness (`tests/moto/server.py`) to inject faults and count calls, and [`bin`] finds
//! the `flotilla` binary that `cargo test --workspace` builds. A test whose server is not
//! running fails and says to run `scripts/test`; it never skips, so a green run means the
//! emulator tests ran.

pub mod bin;
pub mod moto;
