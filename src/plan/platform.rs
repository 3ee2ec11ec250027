//! Whether a node can run an image (platforms as `resolve::platform` reads them): compared before anything is exported, so an image
//! built for another platform is refused with its cause instead of failing inside `ctr`
//! ("image might be filtered out").

/// True when a node on `node` can run an image built for `image`, as containerd's
/// default platform matcher decides: same OS and architecture; an arm64 node also runs
/// 32-bit arm images; a variant is only compared between 32-bit arm platforms.
pub fn runs_on(image: &str, node: &str) -> bool {
    let split = |p: &str| -> (String, String, String) {
        let mut parts = p.split('/');
        let os = parts.next().unwrap_or("").to_string();
        let arch = parts.next().unwrap_or("").to_string();
        let variant = parts.next().unwrap_or("").to_string();
        (os, arch, variant)
    };
    let (image_os, image_arch, image_variant) = split(image);
    let (node_os, node_arch, node_variant) = split(node);
    if image_os != node_os {
        return false;
    }
    match (image_arch.as_str(), node_arch.as_str()) {
        (i, n) if i == n && i == "arm" => arm_version(&image_variant) <= arm_version(&node_variant),
        (i, n) if i == n => true,
        ("arm", "arm64") => true,
        _ => false,
    }
}

fn arm_version(variant: &str) -> u32 {
    variant.trim_start_matches('v').parse().unwrap_or(7)
}

/// What to do about an image built for `image` going to nodes on `node`.
pub fn fix(node: &str) -> String {
    format!(
        "build the image for the nodes' platform: `docker build --platform {node}` or `podman build --platform {node}`; \
         under Skaffold, `skaffold dev --platform {node}` (which sets PLATFORMS for custom builders)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_and_matching() {
        assert!(runs_on("linux/amd64", "linux/amd64"));
        assert!(!runs_on("linux/arm64", "linux/amd64"));
        assert!(!runs_on("linux/amd64", "linux/arm64"));
        assert!(runs_on("linux/arm/v7", "linux/arm64"));
        assert!(runs_on("linux/arm64/v8", "linux/arm64"));
        assert!(!runs_on("linux/arm/v7", "linux/arm/v6"));
        assert!(!runs_on("windows/amd64", "linux/amd64"));
    }
}
