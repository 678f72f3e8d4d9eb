//! Image reference names as Docker normalises them: `busybox` is
//! `docker.io/library/busybox:latest`, `org/app` is `docker.io/org/app:latest`, a first component
//! with a `.` or `:` (or `localhost`) is a registry host.

/// The canonical form of an image reference, or an error that says what is wrong with it.
pub fn normalize(reference: &str) -> Result<String, String> {
    let r = reference.trim();
    if r.is_empty() {
        return Err("an image reference cannot be empty".into());
    }
    if r.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid image reference {r:?}: it contains white space"
        ));
    }
    let (name_tag, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_tag[..last_slash + i],
            Some(&name_tag[last_slash + i + 1..]),
        ),
        None => (name_tag, None),
    };
    if name.is_empty() || name.split('/').any(str::is_empty) || tag == Some("") {
        return Err(format!("invalid image reference {r:?}"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "invalid image reference {r:?}: repository names must be lower case"
        ));
    }
    let first = name.split('/').next().unwrap();
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_host {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => format!("{full}:{t}@{d}"),
        (None, Some(d)) => format!("{full}@{d}"),
        (Some(t), None) => format!("{full}:{t}"),
        (None, None) => format!("{full}:latest"),
    })
}

/// The short form people type, for listings: `docker.io/library/busybox:latest` is
/// `busybox:latest`, `docker.io/org/app:1` is `org/app:1`.
pub fn familiar(normalized: &str) -> &str {
    normalized
        .strip_prefix("docker.io/library/")
        .or_else(|| normalized.strip_prefix("docker.io/"))
        .unwrap_or(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalisation() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("app:V1", "docker.io/library/app:V1"),
            ("org/app", "docker.io/org/app:latest"),
            ("ghcr.io/org/img:v1", "ghcr.io/org/img:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/bb:local", "127.0.0.1:5000/bb:local"),
            ("127.0.0.1:5000/bb", "127.0.0.1:5000/bb:latest"),
            ("alpine@sha256:0123", "docker.io/library/alpine@sha256:0123"),
        ] {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
        }
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/org/app:1"), "org/app:1");
        assert_eq!(familiar("ghcr.io/a/b:1"), "ghcr.io/a/b:1");
        for bad in ["", "Busybox", "a b", "x:", "/x", "a//b"] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
    }
}
