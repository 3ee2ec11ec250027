//! Whether a node can run an image: compared before anything is exported, so an image
//! built for another platform is refused with its cause instead of failing inside `ctr`
//! ("image might be filtered out").

/// `uname -m` as an OCI platform (`linux/amd64`, `linux/arm/v7`).
pub fn from_uname(machine: &str) -> Option<String> {
    let arch = match machine.trim() {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" => "arm/v7",
        "armv6l" => "arm/v6",
        "i386" | "i686" => "386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    };
    Some(format!("linux/{arch}"))
}

/// `os/architecture[/variant]` from an engine's or a config's fields.
pub fn join(os: Option<&str>, arch: Option<&str>, variant: Option<&str>) -> Option<String> {
    let (os, arch) = (os.filter(|s| !s.is_empty())?, arch.filter(|s| !s.is_empty())?);
    Some(match variant.filter(|v| !v.is_empty()) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

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
        assert_eq!(from_uname("x86_64\n").as_deref(), Some("linux/amd64"));
        assert_eq!(from_uname("aarch64").as_deref(), Some("linux/arm64"));
        assert_eq!(from_uname("mips"), None);
        assert_eq!(join(Some("linux"), Some("arm"), Some("v7")).as_deref(), Some("linux/arm/v7"));
        assert_eq!(join(Some("linux"), None, None), None);
        assert!(runs_on("linux/amd64", "linux/amd64"));
        assert!(!runs_on("linux/arm64", "linux/amd64"));
        assert!(!runs_on("linux/amd64", "linux/arm64"));
        assert!(runs_on("linux/arm/v7", "linux/arm64"));
        assert!(runs_on("linux/arm64/v8", "linux/arm64"));
        assert!(!runs_on("linux/arm/v7", "linux/arm/v6"));
        assert!(!runs_on("windows/amd64", "linux/amd64"));
    }
}
