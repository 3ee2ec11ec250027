//! Image references, parsed and normalised the way the kubelet and containerd do it
//! (distribution/reference `ParseNormalizedNamed` followed by `TagNameOnly`), so that the
//! name kindload imports is the name a pod spec will be looked up by.
//!
//! Grammar (distribution/reference):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain "/"] path
//! domain           := host [":" port]
//! host             := domain-name | "[" ipv6 "]"
//! domain-name      := domain-component ("." domain-component)*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path             := path-component ("/" path-component)*
//! path-component   := [a-z0-9]+ (separator [a-z0-9]+)*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [\w][\w.-]{0,127}
//! digest           := algorithm ":" [0-9a-fA-F]{32,}
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
const MAX_TAG_LEN: usize = 128;
const MAX_PATH_LEN: usize = 255;

/// A parsed, normalised image reference. `tag` and `digest` are what the input said;
/// the `latest` default is applied only when rendering ([`ImageRef::normalized`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses `input` as given (nothing is trimmed) and normalises it:
    /// `app` → `docker.io/library/app`, `index.docker.io/u/app` → `docker.io/u/app`.
    pub fn parse(input: &str) -> Result<ImageRef> {
        parse_normalized(input).map_err(|reason| Error::BadReference { input: input.to_string(), reason })
    }

    /// Registry host (with port), e.g. `docker.io`, `localhost:5000`, `[::1]:5000`.
    /// Empty only for the rare names the grammar reads as a bare path (`my_reg.local/app`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry, e.g. `library/app`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// Domain and path without tag or digest: `docker.io/library/app`.
    pub fn repository(&self) -> String {
        join_name(&self.domain, &self.path)
    }

    /// The name containerd's CRI plugin resolves for what the kubelet passes it
    /// (`ParseDockerRef`): tag `latest` when there is neither tag nor digest, and a tag
    /// beside a digest dropped. `docker.io/library/app:latest`, `docker.io/library/app@sha256:...`
    pub fn normalized(&self) -> String {
        match self.digest() {
            Some(digest) => render(&self.repository(), None, Some(digest)),
            None => render(&self.repository(), self.effective_tag(), None),
        }
    }

    /// Short form as docker prints it: `app:latest`, `user/app:v1`, `localhost/app:dev`.
    pub fn familiar(&self) -> String {
        render(&self.familiar_name(), self.effective_tag(), self.digest())
    }

    fn effective_tag(&self) -> Option<&str> {
        match (self.tag(), self.digest()) {
            (None, None) => Some(DEFAULT_TAG),
            (tag, _) => tag,
        }
    }

    /// Docker Hub names lose `docker.io/`, and `library/` when nothing is nested under it.
    fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        let short = match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(official) if !official.contains('/') => official,
            _ => &self.path,
        };
        // A Hub path whose first component reads as a registry (`docker.io/a.b/app`) keeps
        // its domain: `a.b/app` would name another registry.
        match short.split_once('/') {
            Some((first, _)) if first == "localhost" || first.contains(['.', ':']) => self.repository(),
            _ => short.to_string(),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ImageRef::parse(s)
    }
}

fn join_name(domain: &str, path: &str) -> String {
    if domain.is_empty() {
        path.to_string()
    } else {
        format!("{domain}/{path}")
    }
}

fn render(name: &str, tag: Option<&str>, digest: Option<&str>) -> String {
    let mut out = name.to_string();
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    out
}

/// `ParseNormalizedNamed`: reject image IDs, add the Docker Hub domain, insist on a
/// lowercase repository, then parse the canonical string with the strict grammar.
fn parse_normalized(input: &str) -> std::result::Result<ImageRef, String> {
    if input.is_empty() {
        return Err("the reference is empty".into());
    }
    if is_identifier(input) {
        return Err("this looks like an image ID (64 hex digits), not a name; \
                    use the image's name, e.g. app:dev"
            .into());
    }
    let (domain, remainder) = split_docker_domain(input);
    let repository = remainder.split(':').next().unwrap_or_default();
    if has_uppercase(repository) {
        return Err(format!("repository name {repository:?} must be lowercase"));
    }
    parse_canonical(&format!("{domain}/{remainder}"))
}

/// Upstream `splitDockerDomain`: the first component is a registry only when it is
/// `localhost`, contains `.` or `:`, or has uppercase letters (which a path cannot).
fn split_docker_domain(input: &str) -> (String, String) {
    let Some((first, rest)) = input.split_once('/') else {
        return (DEFAULT_DOMAIN.into(), format!("{OFFICIAL_REPO_PREFIX}{input}"));
    };
    let (domain, remainder) = if first == "localhost" {
        (first, rest)
    } else if first == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, rest)
    } else if first.contains(['.', ':']) || has_uppercase(first) {
        (first, rest)
    } else {
        (DEFAULT_DOMAIN, input)
    };
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        return (domain.into(), format!("{OFFICIAL_REPO_PREFIX}{remainder}"));
    }
    (domain.into(), remainder.into())
}

/// Upstream `Parse` on an already-prefixed string: `name[:tag][@digest]`.
fn parse_canonical(s: &str) -> std::result::Result<ImageRef, String> {
    // Neither name nor tag may contain '@', so the first one starts the digest.
    let (name_and_tag, digest) = match s.split_once('@') {
        Some((before, digest)) => (before, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    let (name, tag) = split_tag(name_and_tag);
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let (domain, path) = split_name(name)?;
    if path.len() > MAX_PATH_LEN {
        return Err(format!("repository path is longer than {MAX_PATH_LEN} characters"));
    }
    Ok(ImageRef {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
    })
}

/// A ':' after the last '/' can only start a tag; one before it belongs to a port.
fn split_tag(name_and_tag: &str) -> (&str, Option<&str>) {
    match name_and_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name_and_tag, None),
    }
}

/// The grammar prefers reading the first component as a domain; when it is not a valid
/// one, the whole name is tried as a path (so `my_reg.local/app` has no domain at all).
fn split_name(name: &str) -> std::result::Result<(&str, &str), String> {
    if let Some((domain, path)) = name.split_once('/') {
        if is_domain_and_port(domain) && is_path(path) {
            return Ok((domain, path));
        }
        if is_path(name) {
            return Ok(("", name));
        }
        if !is_domain_and_port(domain) {
            return Err(format!("{domain:?} is neither a valid registry host nor a path"));
        }
        return Err(describe_bad_path(path));
    }
    if is_path(name) {
        Ok(("", name))
    } else {
        Err(describe_bad_path(name))
    }
}

fn describe_bad_path(path: &str) -> String {
    match path.split('/').find(|c| !is_path_component(c)) {
        Some("") => "the repository path has an empty component (leading, trailing or '//')".into(),
        Some(component) => format!(
            "path component {component:?} must be lowercase letters and digits, \
             separated by '.', '_', '__' or dashes"
        ),
        None => format!("invalid repository path {path:?}"),
    }
}

fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

/// `[a-z0-9]+ (separator [a-z0-9]+)*` with separator `.`, `_`, `__` or one or more `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(is_alnum) || !bytes.last().is_some_and(is_alnum) {
        return false;
    }
    let mut separators = bytes.split(is_alnum).filter(|run| !run.is_empty());
    separators.all(|run| matches!(run, b"." | b"_" | b"__") || run.iter().all(|&b| b == b'-'))
}

/// `host[:port]` where host is a domain name, an IPv4 address or a bracketed IPv6 address.
fn is_domain_and_port(domain: &str) -> bool {
    let (host_ok, port) = match domain.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((address, after)) => (is_ipv6_body(address), after),
            None => return false,
        },
        None => match domain.find(':') {
            Some(colon) => (is_domain_name(&domain[..colon]), &domain[colon..]),
            None => (is_domain_name(domain), ""),
        },
    };
    host_ok && is_optional_port(port)
}

/// Nothing, or ':' and at least one digit (upstream does not range-check the number).
fn is_optional_port(port: &str) -> bool {
    port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn is_domain_name(name: &str) -> bool {
    name.split('.').all(is_domain_component)
}

/// Upstream only checks the character set: `[a-fA-F0-9:]+`.
fn is_ipv6_body(address: &str) -> bool {
    !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
}

/// `[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[\w][\w.-]{0,127}`, where `\w` is ASCII letters, digits and `_`.
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if tag.is_empty() {
        return Err("the tag after ':' is empty".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("the tag is longer than {MAX_TAG_LEN} characters"));
    }
    let bytes = tag.as_bytes();
    let valid = is_word(bytes[0]) && bytes.iter().all(|&b| is_word(b) || b == b'.' || b == b'-');
    if !valid {
        return Err(format!(
            "tag {tag:?} may contain only letters, digits, '_', '.' and '-', \
             and must not start with '.' or '-'"
        ));
    }
    Ok(())
}

/// The reference grammar, then go-digest's validation: only algorithms containerd has
/// registered are accepted, with exactly their length of lowercase hex.
fn check_digest(digest: &str) -> std::result::Result<(), String> {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} must be <algorithm>:<hex>"));
    };
    if !is_digest_algorithm(algorithm) || encoded.len() < 32 || !encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("digest {digest:?} must be <algorithm>:<at least 32 hex digits>, e.g. sha256:<64 hex>"));
    }
    let Some(hex_len) = registered_digest_hex_len(algorithm) else {
        return Err(format!("digest algorithm {algorithm:?} is not supported (use sha256, sha384 or sha512)"));
    };
    let lowercase_hex = encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if encoded.len() != hex_len || !lowercase_hex {
        return Err(format!("{algorithm} digest must be {hex_len} lowercase hex digits"));
    }
    Ok(())
}

fn registered_digest_hex_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    }
}

/// `[A-Za-z][A-Za-z0-9]*` components joined by one of `-_+.`.
fn is_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic) && bytes.iter().all(u8::is_ascii_alphanumeric)
    })
}

/// A bare image ID: exactly 64 lowercase hex digits.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn has_uppercase(s: &str) -> bool {
    s.to_lowercase() != s
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "50fd1c54b129cd11eed7c33c2f001f4bb5b9fe7e4490e9235007c687fcd22e28";

    fn parse(input: &str) -> ImageRef {
        ImageRef::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn reason(input: &str) -> String {
        match ImageRef::parse(input) {
            Err(Error::BadReference { input: echoed, reason }) => {
                assert_eq!(echoed, input);
                reason
            }
            other => panic!("{input:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn valid_references_normalise_like_containerd() {
        let digest = format!("sha256:{HEX}");
        // (input, domain, path, tag, normalized, familiar); DIGEST stands for a sha256 digest.
        #[rustfmt::skip]
        let cases = [
            ("app", "docker.io", "library/app", None, "docker.io/library/app:latest", "app:latest"),
            ("app:v1", "docker.io", "library/app", Some("v1"), "docker.io/library/app:v1", "app:v1"),
            ("user/app:v1", "docker.io", "user/app", Some("v1"), "docker.io/user/app:v1", "user/app:v1"),
            ("index.docker.io/app", "docker.io", "library/app", None, "docker.io/library/app:latest", "app:latest"),
            ("docker.io/app", "docker.io", "library/app", None, "docker.io/library/app:latest", "app:latest"),
            ("docker.io/library/a/b", "docker.io", "library/a/b", None, "docker.io/library/a/b:latest", "library/a/b:latest"),
            ("localhost/app", "localhost", "app", None, "localhost/app:latest", "localhost/app:latest"),
            ("localhost/app:dev", "localhost", "app", Some("dev"), "localhost/app:dev", "localhost/app:dev"),
            ("localhost:5000/a/b:t", "localhost:5000", "a/b", Some("t"), "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("host.example:5000/a", "host.example:5000", "a", None, "host.example:5000/a:latest", "host.example:5000/a:latest"),
            ("[::1]:5000/a", "[::1]:5000", "a", None, "[::1]:5000/a:latest", "[::1]:5000/a:latest"),
            ("[2001:db8::1]/team/app:v2", "[2001:db8::1]", "team/app", Some("v2"), "[2001:db8::1]/team/app:v2", "[2001:db8::1]/team/app:v2"),
            ("192.168.1.10:5000/app", "192.168.1.10:5000", "app", None, "192.168.1.10:5000/app:latest", "192.168.1.10:5000/app:latest"),
            ("Registry/app", "Registry", "app", None, "Registry/app:latest", "Registry/app:latest"),
            ("example.com/app/bb:dev", "example.com", "app/bb", Some("dev"), "example.com/app/bb:dev", "example.com/app/bb:dev"),
            ("a-b__c---e/f_g.h:V1.0-rc_1", "docker.io", "a-b__c---e/f_g.h", Some("V1.0-rc_1"), "docker.io/a-b__c---e/f_g.h:V1.0-rc_1", "a-b__c---e/f_g.h:V1.0-rc_1"),
            ("app@DIGEST", "docker.io", "library/app", None, "docker.io/library/app@DIGEST", "app@DIGEST"),
            ("app:v1@DIGEST", "docker.io", "library/app", Some("v1"), "docker.io/library/app@DIGEST", "app:v1@DIGEST"),
        ];
        for (input, domain, path, tag, normalized, familiar) in cases {
            let input = input.replace("DIGEST", &digest);
            let normalized = normalized.replace("DIGEST", &digest);
            let familiar = familiar.replace("DIGEST", &digest);
            let r = parse(&input);
            assert_eq!(r.domain(), domain, "domain of {input}");
            assert_eq!(r.path(), path, "path of {input}");
            assert_eq!(r.tag(), tag, "tag of {input}");
            assert_eq!(r.normalized(), normalized, "normalized {input}");
            assert_eq!(r.to_string(), normalized, "display {input}");
            assert_eq!(r.familiar(), familiar, "familiar {input}");
            assert_eq!(parse(&normalized).normalized(), normalized, "normalized form of {input} is stable");
        }
    }

    #[test]
    fn digest_is_kept_and_tag_dropped_only_for_the_cri_lookup() {
        let digest = format!("sha256:{HEX}");
        let r = parse(&format!("app:v1@{digest}"));
        assert_eq!(r.digest(), Some(digest.as_str()));
        assert_eq!(r.repository(), "docker.io/library/app");
        assert_eq!(r.normalized(), format!("docker.io/library/app@{digest}"));
        assert_eq!(r.familiar(), format!("app:v1@{digest}"));
        assert_eq!(parse("app").normalized(), "docker.io/library/app:latest");
    }

    #[test]
    fn hub_aliases_are_the_same_reference() {
        let plain = parse("app");
        for alias in ["docker.io/app", "index.docker.io/app", "docker.io/library/app"] {
            assert_eq!(parse(alias), plain, "{alias}");
        }
        assert_ne!(parse("app"), parse("app:latest"), "an explicit tag is remembered");
        assert_eq!(parse("app").normalized(), parse("app:latest").normalized());
    }

    #[test]
    fn other_registered_digest_algorithms_need_their_own_length() {
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert_eq!(parse(&format!("app@{sha512}")).digest(), Some(sha512.as_str()));
        let sha384 = format!("sha384:{}", "0".repeat(96));
        assert!(ImageRef::parse(&format!("app@{sha384}")).is_ok());
        assert!(reason(&format!("app@sha512:{HEX}")).contains("128"));
        assert!(reason(&format!("app@md5:{}", "a".repeat(32))).contains("not supported"));
        assert!(reason(&format!("app@sha256:{}", HEX.to_uppercase())).contains("lowercase"));
    }

    #[test]
    fn malformed_references_are_rejected_with_a_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty"),
            ("App:v1".into(), "lowercase"),
            ("user/App".into(), "lowercase"),
            ("app:".into(), "tag"),
            ("app:bad tag".into(), "tag"),
            ("app:-v1".into(), "tag"),
            (format!("app:{}", "a".repeat(129)), "128"),
            (":v1".into(), "empty component"),
            ("app@sha256:123".into(), "hex"),
            ("app@sha256".into(), "algorithm"),
            ("a//b".into(), "empty component"),
            ("a/".into(), "empty component"),
            ("-app".into(), "\"-app\""),
            ("app-".into(), "\"app-\""),
            ("a..b/c".into(), "neither a valid registry host nor a path"),
            ("a___b".into(), "\"a___b\""),
            ("localhost:port/app".into(), "neither a valid registry host nor a path"),
            ("[::1/app".into(), "neither a valid registry host nor a path"),
            ("[zz]:5000/app".into(), "neither a valid registry host nor a path"),
            ("example.com/a:b/c".into(), "\"a:b\""),
            (format!("a@sha256:{HEX}@sha256:{HEX}"), "digest"),
            (HEX.into(), "image ID"),
        ];
        for (input, expected) in cases {
            let why = reason(&input);
            assert!(why.contains(expected), "{input:?}: reason {why:?} should mention {expected:?}");
        }
    }

    #[test]
    fn tags_up_to_128_characters_are_fine() {
        let tag = "a".repeat(MAX_TAG_LEN);
        assert_eq!(parse(&format!("app:{tag}")).tag(), Some(tag.as_str()));
    }

    #[test]
    fn paths_longer_than_255_are_rejected_but_domain_does_not_count() {
        let path = format!("x/{}", "a".repeat(253));
        assert_eq!(path.len(), MAX_PATH_LEN);
        assert!(ImageRef::parse(&format!("registry.example.com/{path}")).is_ok());
        assert!(reason(&format!("registry.example.com/{path}a")).contains("255"));
    }

    #[test]
    fn first_component_that_is_not_a_host_becomes_part_of_the_path() {
        // Contains '.', so it is not Docker Hub; not a valid host, so upstream reads the
        // whole name as a path with no domain.
        let r = parse("my_reg.local/app");
        assert_eq!(r.domain(), "");
        assert_eq!(r.path(), "my_reg.local/app");
        assert_eq!(r.normalized(), "my_reg.local/app:latest");
        // No '/': always Docker Hub, even when it looks like a host and port.
        assert_eq!(parse("localhost:5000").normalized(), "docker.io/library/localhost:5000");
        // A prefixed image ID is a name with a 64-hex tag, as upstream parses it.
        assert_eq!(parse(&format!("sha256:{HEX}")).normalized(), format!("docker.io/library/sha256:{HEX}"));
    }

    #[test]
    fn from_str_matches_parse() {
        let r: ImageRef = "user/app:v1".parse().unwrap();
        assert_eq!(r, parse("user/app:v1"));
        assert!("App".parse::<ImageRef>().is_err());
    }

    #[test]
    fn path_component_separators() {
        for ok in ["a", "a.b", "a_b", "a__b", "a-b", "a---b", "a1.b2_c3__d4-e5"] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a._b", "a___b", "a-_b", "A", "a b", "_a"] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }

    #[test]
    fn domains_and_ports() {
        for ok in ["localhost", "a", "a-b.c", "A.B", "1.2.3.4:80", "[::1]", "[fe80::1]:443", "x:1"] {
            assert!(is_domain_and_port(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a:", "a:b", "[]", "[::1]x", "[::1]:", "[g::1]", "a_b"] {
            assert!(!is_domain_and_port(bad), "{bad}");
        }
    }
}
