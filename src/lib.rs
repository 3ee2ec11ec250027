//! kindload: get locally built images into kind nodes and prove they arrived.
//!
//! The pipeline, one module per stage: `request` (CLI, environment, Skaffold's and Tilt's contracts) →
//! `resolve` (engine, image refs, cluster, nodes) → `plan` (per node: skip, retag, transfer)
//! → `transfer` (export, fan-out, import) → `verify` (crictl or ctr per node) → `report`.

pub mod commands;
pub mod digest;
pub mod error;
pub mod exec;
pub mod plan;
pub mod registry;
pub mod report;
pub mod request;
pub mod resolve;
pub mod transfer;
pub mod verify;

/// `kindload --version`: the package version, and the commit when built from a git checkout
/// (set by `build.rs`).
pub const VERSION: &str = env!("KINDLOAD_VERSION");
