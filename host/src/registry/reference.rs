//! Image references as the registry code needs them: split into registry host, repository,
//! tag and digest (after Docker's normalisation, `image::normalize`), turned into
//! `oci_client::Reference`s, and which hosts are insecure registries (no certificate checks,
//! plain HTTP when they do not speak TLS).

use std::fmt;

use crate::image;

/// A normalised image reference, split.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    /// Registry host (with port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub host: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageName {
    /// Parses any spelling Docker accepts (`busybox`, `org/app:1`, `host:5000/a@sha256:…`).
    pub fn parse(reference: &str) -> anyhow::Result<ImageName> {
        let full = image::normalize(reference).map_err(anyhow::Error::msg)?;
        let (name_tag, digest) = match full.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (full.as_str(), None),
        };
        if let Some(d) = &digest {
            d.parse::<crate::store::Digest>().map_err(|e| {
                anyhow::anyhow!("invalid image reference {reference:?}: bad digest {d:?}: {e}")
            })?;
        }
        let last_slash = name_tag.rfind('/').unwrap_or(0);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(name_tag[last_slash + i + 1..].to_string()),
            ),
            None => (name_tag, None),
        };
        let (host, repository) = name
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("invalid image reference {reference:?}"))?;
        Ok(ImageName {
            host: host.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// `host/repository` without tag or digest.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.host, self.repository)
    }

    /// The name a tag is kept under in the store (`host/repo:tag`); None for digest-only names.
    pub fn store_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.repo()))
    }

    /// The same name pinned to `digest`: `host/repo[:tag]@digest`.
    pub fn pinned(&self, digest: &str) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}@{digest}", self.repo()),
            None => format!("{}@{digest}", self.repo()),
        }
    }

    /// This repository at `digest` (tag dropped).
    pub fn at_digest(&self, digest: &str) -> ImageName {
        ImageName {
            digest: Some(digest.to_string()),
            tag: None,
            ..self.clone()
        }
    }

    /// The reference oci-client speaks.
    pub fn oci(&self) -> oci_client::Reference {
        let (host, repo) = (self.host.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(host, repo, d.clone()),
            (Some(t), None) => oci_client::Reference::with_tag(host, repo, t.clone()),
            (None, None) => oci_client::Reference::with_tag(host, repo, "latest".into()),
        }
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => write!(f, "{}:{t}@{d}", self.repo()),
            (None, Some(d)) => write!(f, "{}@{d}", self.repo()),
            (Some(t), None) => write!(f, "{}:{t}", self.repo()),
            (None, None) => write!(f, "{}", self.repo()),
        }
    }
}

/// The host without its port (`[::1]:5000` → `::1`).
fn host_only(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Whether `host` is this machine (`localhost`, `127.0.0.0/8`, `::1`), which Docker treats as
/// an insecure registry without being told.
pub fn is_loopback(host: &str) -> bool {
    let h = host_only(host);
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` is an insecure registry: loopback, or named with `--insecure-registry`
/// (matched with or without the port).
pub fn is_insecure(host: &str, insecure: &[String]) -> bool {
    is_loopback(host)
        || insecure
            .iter()
            .any(|i| i == host || (!i.contains(':') && i == host_only(host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_references() {
        let n = ImageName::parse("busybox").unwrap();
        assert_eq!(n.host, "docker.io");
        assert_eq!(n.repository, "library/busybox");
        assert_eq!(n.tag.as_deref(), Some("latest"));
        assert_eq!(n.store_name().unwrap(), "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let n = ImageName::parse(&format!("127.0.0.1:5000/x/y:1@{d}")).unwrap();
        assert_eq!(n.host, "127.0.0.1:5000");
        assert_eq!(n.repository, "x/y");
        assert_eq!(n.tag.as_deref(), Some("1"));
        assert_eq!(n.digest.as_deref(), Some(d.as_str()));
        assert_eq!(n.oci().digest(), Some(d.as_str()));
        assert_eq!(n.pinned(&d), format!("127.0.0.1:5000/x/y:1@{d}"));
        let n = ImageName::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(n.tag, None);
        assert_eq!(n.store_name(), None);
        assert!(ImageName::parse("alpine@sha256:short").is_err());
    }

    #[test]
    fn plain_http_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:80",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(h), "{h}");
        }
        let insecure = vec!["reg.lan".to_string(), "10.0.0.1:5000".to_string()];
        assert!(is_insecure("reg.lan:443", &insecure));
        assert!(is_insecure("10.0.0.1:5000", &insecure));
        assert!(!is_insecure("10.0.0.1:5001", &insecure));
        assert!(!is_insecure("docker.io", &insecure));
    }
}
