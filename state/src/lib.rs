//! flotilla's state stores: where the state document lives (a local file; later `s3://`,
//! `gs://`, `az://`), each write atomic and conditional (compare-and-swap), each operation
//! under a lock. Implements `flotilla_core::state::StateStore`.
