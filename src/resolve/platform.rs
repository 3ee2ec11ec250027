//! Platforms as nodes and images state them, written `os/arch[/variant]`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_and_fields() {
        assert_eq!(from_uname("x86_64\n").as_deref(), Some("linux/amd64"));
        assert_eq!(from_uname("aarch64").as_deref(), Some("linux/arm64"));
        assert_eq!(from_uname("mips"), None);
        assert_eq!(join(Some("linux"), Some("arm"), Some("v7")).as_deref(), Some("linux/arm/v7"));
        assert_eq!(join(Some("linux"), None, None), None);
    }
}
