//! End-to-end tests of flotilla against real local servers: moto (EC2, ELBv2, S3), Azurite,
//! fake-gcs-server and sshd, which `scripts/test` installs and starts. The CLI's own tests
//! (which need no server) live in `cli/tests/`. The emulator suites arrive with the provider
//! and state-store issues.
