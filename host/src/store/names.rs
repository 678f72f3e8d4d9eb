//! Owns the mapping from user-chosen names (image references, lock names) to safe file names:
//! validation with clear errors, and a reversible percent-encoding that can never produce a
//! path separator, `.` or `..`.

use super::digest::Digest;
use super::error::{StoreError, clip};

/// Longest accepted image name, in bytes.
pub const MAX_REF_LEN: usize = 1024;

/// Longest encoded file name written as-is; longer names are stored under a hash.
const MAX_FILE_NAME: usize = 240;

/// Checks an image reference name (`app:1`, `registry.example:5000/team/app:tag`,
/// `app@sha256:…`): ASCII letters, digits and `._-/:@`, no empty, `.` or `..` path component.
pub fn validate_ref_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason| StoreError::InvalidRefName {
        name: clip(name),
        reason,
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > MAX_REF_LEN {
        return Err(bad("the name is longer than 1024 bytes"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@".contains(*c)))
    {
        return Err(if c.is_whitespace() || c.is_control() {
            bad("it contains whitespace or control characters")
        } else {
            bad("only letters, digits and `. _ - / : @` are allowed")
        });
    }
    for component in name.split('/') {
        match component {
            "" => {
                return Err(bad(
                    "it has an empty path component (leading, trailing or `//`)",
                ));
            }
            "." | ".." => return Err(bad("`.` and `..` are not allowed as path components")),
            _ => {}
        }
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("it must start with a letter or digit"));
    }
    Ok(())
}

/// Checks a lock name: 1..=200 bytes, no NUL.
pub(crate) fn validate_lock_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason| StoreError::InvalidLockName {
        name: clip(name),
        reason,
    };
    if name.is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > 200 {
        return Err(bad("the name is longer than 200 bytes"));
    }
    if name.contains('\0') {
        return Err(bad("the name contains a NUL byte"));
    }
    Ok(())
}

/// Encodes `name` as a single safe file name: bytes outside `[A-Za-z0-9_-]` become `%XX`
/// (uppercase hex). Names whose encoding is too long become `%h<sha256 hex>`, which no
/// plain encoding can produce (`h` is not a hex digit).
pub(crate) fn encode_file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_FILE_NAME {
        return format!("%h{}", Digest::of_bytes(name.as_bytes()).hex());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_usual_references() {
        for name in [
            "app",
            "app:1",
            "App_2:latest",
            "registry.example:5000/team/app:v1.2-rc",
            "docker.io/library/alpine:3.19",
            "app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            validate_ref_name(name).unwrap();
        }
    }

    #[test]
    fn rejects_traversal_and_junk() {
        let long = "a".repeat(MAX_REF_LEN + 1);
        for name in [
            "",
            "../x",
            "..",
            ".",
            "a/../../etc/passwd",
            "a/./b",
            "/etc/passwd",
            "a/",
            "a//b",
            "a b",
            "a\nb",
            "a\0b",
            "a\\..\\b",
            "%2e%2e",
            "ä:1",
            ".hidden",
            "-flag",
            long.as_str(),
        ] {
            let err = validate_ref_name(name).unwrap_err();
            assert!(matches!(err, StoreError::InvalidRefName { .. }), "{name:?}");
            assert!(err.to_string().contains("app:1"), "{err}");
        }
    }

    #[test]
    fn encoding_is_a_safe_single_component() {
        for name in ["../x", "..", ".", "a/b:c", "%h00", "x".repeat(300).as_str()] {
            let enc = encode_file_name(name);
            assert!(!enc.contains('/') && !enc.contains('.') && !enc.is_empty());
            assert!(enc.len() <= MAX_FILE_NAME + 2);
        }
        assert_eq!(encode_file_name("app:1"), "app%3A1");
        assert_ne!(encode_file_name("a:b"), encode_file_name("a/b"));
        assert!(encode_file_name(&"x".repeat(300)).starts_with("%h"));
    }
}
