//! Proof on every node that the kubelet can see the image.

pub mod cri;
