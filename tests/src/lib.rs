//! End-to-end tests of flotilla against real local servers: moto (EC2, ELBv2, S3), Azurite,
//! fake-gcs-server and sshd, which `scripts/test` installs and starts. The CLI's own tests
//! (which need no server) live in `cli/tests/`.
//!
//! This library is the harness the test files in `tests/tests/` share: [`moto`] reaches the
//! moto harness (`tests/moto/server.py`) to inject faults and count calls, [`bin`] finds
//! the `flotilla` binary that `cargo test --workspace` builds, and [`workdir`] gives a test its
//! own directory, state lineage and readers of what moto holds for it. [`gcs`] and [`azurite`]
//! make buckets and containers on fake-gcs-server and Azurite, and [`state_suite`] is the
//! behaviour every object-store state is tested for. [`gce`] reaches the Compute Engine fake
//! (`tests/gce/server.py`) for the GCP tests and [`arm`] the Azure Resource Manager fake
//! (`tests/arm/server.py`) for the Azure tests; [`http`] is the tiny HTTP/1.1 client the
//! harnesses share. A test whose server is not running fails and says to run `scripts/test`;
//! it never skips, so a green run means the emulator tests ran.

pub mod arm;
pub mod azurite;
pub mod bin;
pub mod gce;
pub mod gcs;
pub mod http;
pub mod moto;
pub mod s3;
pub mod sshd;
pub mod state_suite;
pub mod workdir;
