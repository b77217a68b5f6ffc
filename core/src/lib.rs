//! The flotilla engine.
//!
//! Data flows one way through this crate, and each module owns one step:
//!
//! ```text
//! fleet files --config--> Config --+
//! state store --load----> State ---+--plan--> Plan --render--> text | json | markdown
//! catalog ---------------> Offers -+            |
//!                                               +--apply--> executor --providers--> State'
//! ```
//!
//! - [`spec`]: the resource grammar (`"H100:8"`, `"24GB.."`, ranges).
//! - [`config`]: HCL fleet files into a typed, evaluated [`config::Config`], with
//!   source-pointing diagnostics.
//! - [`catalog`]: offers (one way to run one node) and the ranked query over them.
//! - [`state`]: the state document and the [`state::StateStore`] port.
//! - [`plan`]: desired fleets versus state, offer selection, the dependency graph, renderers.
//! - [`apply`]: the executor that carries a plan out through [`provider::Provider`]s.
//!
//! `core` knows no cloud SDK and does no network I/O: adapters live in the `providers/` and
//! `state/` crates, and only the `flotilla` binary knows them all.

pub mod apply;
pub mod catalog;
pub mod config;
pub mod plan;
pub mod provider;
pub mod spec;
pub mod state;

/// The version written into plan files and plan JSON (`flotilla_version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
