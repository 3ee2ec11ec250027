//! What the user asked for: command line, environment, and Skaffold's contract.

pub mod build_artifacts;
pub mod cli;
pub mod config;
pub mod dockerfile;
pub mod manifests;
pub mod record;
pub mod skaffold;
pub mod skaffold_settings;
