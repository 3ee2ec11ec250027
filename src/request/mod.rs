//! What the user asked for: command line, environment, and Skaffold's and Tilt's contracts.

pub mod build_artifacts;
pub mod build_env;
pub mod cli;
pub mod config;
pub mod dockerfile;
pub mod manifests;
pub mod record;
pub mod skaffold;
pub mod skaffold_settings;
pub mod tilt;
