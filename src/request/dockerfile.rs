//! The images a Dockerfile (or Containerfile) builds on: `FROM` lines and `COPY --from`
//! naming an image rather than a stage, with global `ARG`s substituted. What `--pull never`
//! checks locally before the engine is asked to build.

/// A base image as written, and the reference it names once ARGs are substituted (None
/// when a variable has no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub written: String,
    pub image: Option<String>,
}

/// Every external image the build needs, in order, without duplicates; `scratch` and
/// earlier stages are not images. `build_args` override the Dockerfile's ARG defaults.
pub fn bases(text: &str, build_args: &[(String, String)]) -> Vec<Base> {
    let mut args: Vec<(String, Option<String>)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut found: Vec<Base> = Vec::new();
    let mut seen_from = false;
    let push = |written: &str, args: &[(String, Option<String>)], found: &mut Vec<Base>| {
        let image = substitute(written, args, build_args);
        if image.as_deref().is_some_and(|i| i.eq_ignore_ascii_case("scratch")) {
            return;
        }
        if !found.iter().any(|b| b.written == written && b.image == image) {
            found.push(Base { written: written.to_string(), image });
        }
    };
    for line in instructions(text) {
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        match keyword.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for decl in rest {
                    let (name, value) = match decl.split_once('=') {
                        Some((n, v)) => (n, Some(unquote(v).to_string())),
                        None => (decl, None),
                    };
                    args.retain(|(n, _)| n != name);
                    args.push((name.to_string(), value));
                }
            }
            "FROM" => {
                seen_from = true;
                let mut operands = rest.iter().filter(|w| !w.starts_with("--"));
                let Some(image) = operands.next() else { continue };
                let is_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(image));
                if !is_stage {
                    push(image, &args, &mut found);
                }
                if let (Some(as_kw), Some(name)) = (operands.next(), operands.next()) {
                    if as_kw.eq_ignore_ascii_case("as") {
                        stages.push(name.to_string());
                    }
                }
            }
            "COPY" | "ADD" => {
                for flag in rest.iter().take_while(|w| w.starts_with("--")) {
                    let Some(from) = flag.strip_prefix("--from=") else { continue };
                    let stage =
                        from.chars().all(|c| c.is_ascii_digit()) || stages.iter().any(|s| s.eq_ignore_ascii_case(from));
                    if !stage {
                        push(from, &args, &mut found);
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// Logical lines: continuations joined, comments and blank lines dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

/// `$NAME`, `${NAME}`, `${NAME:-default}`; None when a variable has no value.
fn substitute(word: &str, args: &[(String, Option<String>)], build_args: &[(String, String)]) -> Option<String> {
    let lookup = |name: &str| -> Option<String> {
        let declared = args.iter().find(|(n, _)| n == name)?;
        build_args.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| declared.1.clone())
    };
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let (name, default) = if chars.peek() == Some(&'{') {
            chars.next();
            let inner: String = chars.by_ref().take_while(|&c| c != '}').collect();
            match inner.split_once(":-") {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (inner, None),
            }
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            (name, None)
        };
        match lookup(&name).filter(|v| !v.is_empty()).or(default) {
            Some(value) => out.push_str(&value),
            None => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(text: &str, build_args: &[(String, String)]) -> Vec<Option<String>> {
        bases(text, build_args).into_iter().map(|b| b.image).collect()
    }

    #[test]
    fn from_lines_stages_and_scratch() {
        let text = "# syntax=docker/dockerfile:1\nFROM --platform=$BUILDPLATFORM golang:1.22 AS build\nRUN go build\n\
                    FROM build AS test\nfrom scratch\nCOPY --from=build /app /app\nCOPY --from=0 /x /x\n\
                    COPY --from=busybox:1.36 /bin/busybox /bin/\nFROM localhost:5000/base:v1\n";
        assert_eq!(
            images(text, &[]),
            [Some("golang:1.22".into()), Some("busybox:1.36".into()), Some("localhost:5000/base:v1".into())]
        );
    }

    #[test]
    fn global_args_and_build_args() {
        let text = "ARG REGISTRY=docker.io\nARG BASE\nARG TAG=\"3.19\"\nFROM ${REGISTRY}/library/alpine:$TAG\n\
                    FROM $BASE AS app\nFROM ${MISSING:-debian:12}\n";
        let found = bases(text, &[]);
        assert_eq!(found[0].image.as_deref(), Some("docker.io/library/alpine:3.19"));
        assert_eq!(found[1], Base { written: "$BASE".into(), image: None });
        assert_eq!(found[2].image.as_deref(), Some("debian:12"));
        let with_arg = images(text, &[("BASE".into(), "kl/base:3f1c".into()), ("TAG".into(), "3.20".into())]);
        assert_eq!(with_arg[0].as_deref(), Some("docker.io/library/alpine:3.20"));
        assert_eq!(with_arg[1].as_deref(), Some("kl/base:3f1c"));
    }

    #[test]
    fn continuations_and_duplicates() {
        let text = "FROM \\\n  alpine:3.19 \\\n  AS one\nFROM alpine:3.19\nFROM one\n";
        assert_eq!(images(text, &[]), [Some("alpine:3.19".into())]);
    }
}
