//! Turning the request into facts: engine, image references and ids, cluster, nodes.

pub mod cluster;
pub mod containerd;
pub mod engine;
pub mod engine_kind;
pub mod holdings;
pub mod image;
pub mod inspect;
pub mod kubeconfig;
pub mod node;
pub mod platform;
pub mod provider;
pub mod reach;
pub mod records;
pub mod reference;
pub mod remote;
