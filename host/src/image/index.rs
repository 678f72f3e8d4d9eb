//! Image indexes: the one a multi-platform build writes (an image manifest per platform, each
//! with its `platform`, then the attestation manifests that describe them, as BuildKit lays
//! them out), and reading any index's entries back — which are images for a platform and
//! which are attestations (`unknown/unknown`, `vnd.docker.reference.type:
//! attestation-manifest`) — for the store's listing, checks, exports and `--load`.

use std::io;

use serde_json::{Value, json};

use super::manifest::{MEDIA_INDEX, MEDIA_MANIFEST, canonical_json};
use super::{invalid, sha256_digest};
use crate::ir::Platform;

/// Index entry annotation: the image manifest an attestation manifest describes.
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// Index entry annotation: what kind of reference (`attestation-manifest`).
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// The value of [`ANNOTATION_REFERENCE_TYPE`] for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// A manifest blob: its digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// `sha256:…`
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

impl Blob {
    /// The digest and size of `bytes`.
    pub fn of(bytes: &[u8]) -> Blob {
        Blob {
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
        }
    }
}

/// One platform of a multi-platform result: its image manifest and, with provenance, the
/// attestation manifest about it.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The platform the image is for.
    pub platform: Platform,
    /// Its image manifest.
    pub manifest: Blob,
    /// The attestation manifest describing it.
    pub attestation: Option<Blob>,
}

fn platform_json(p: &Platform) -> Value {
    let mut v = json!({ "os": p.os, "architecture": p.architecture });
    if let Some(var) = &p.variant {
        v["variant"] = json!(var);
    }
    v
}

/// The index over `images` (in their order; attestations after every image, as BuildKit),
/// with `annotations` on the index itself. Canonical JSON: the same images give the same bytes.
pub fn build(
    images: &[PlatformImage],
    annotations: &std::collections::BTreeMap<String, String>,
) -> Vec<u8> {
    let mut manifests: Vec<Value> = images
        .iter()
        .map(|i| {
            json!({
                "mediaType": MEDIA_MANIFEST,
                "digest": i.manifest.digest,
                "size": i.manifest.size,
                "platform": platform_json(&i.platform),
            })
        })
        .collect();
    for i in images {
        if let Some(a) = &i.attestation {
            manifests.push(json!({
                "mediaType": MEDIA_MANIFEST,
                "digest": a.digest,
                "size": a.size,
                "platform": { "os": "unknown", "architecture": "unknown" },
                "annotations": {
                    ANNOTATION_REFERENCE_DIGEST: i.manifest.digest,
                    ANNOTATION_REFERENCE_TYPE: ATTESTATION_MANIFEST,
                },
            }));
        }
    }
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": manifests,
    });
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    canonical_json(&index)
}

/// What an index entry is.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry's manifest (or nested index) digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its platform, when the entry is an image for one (attestations have none).
    pub platform: Option<Platform>,
    /// For an attestation manifest: the image manifest it describes.
    pub attests: Option<String>,
}

/// Whether a manifest document is an index (OCI or a Docker manifest list).
pub fn is_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes).is_ok_and(|v| {
        let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
        mt == MEDIA_INDEX
            || mt == super::manifest::DOCKER_MEDIA_LIST
            || (mt.is_empty() && v.get("manifests").is_some())
    })
}

/// The entries of the index `bytes` (`what` names it in errors).
pub fn entries(bytes: &[u8], what: &str) -> io::Result<Vec<Entry>> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("{what}: not JSON: {e}")))?;
    let list = v
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("{what}: an index without `manifests`")))?;
    list.iter()
        .map(|e| {
            let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let digest = s(e.get("digest"))
                .ok_or_else(|| invalid(format!("{what}: an index entry without a digest")))?;
            super::digest_hex(&digest)?;
            let ann = |k: &str| s(e.get("annotations").and_then(|a| a.get(k)));
            let attests = (ann(ANNOTATION_REFERENCE_TYPE).as_deref() == Some(ATTESTATION_MANIFEST))
                .then(|| ann(ANNOTATION_REFERENCE_DIGEST))
                .flatten();
            let p = e.get("platform");
            let platform = match (
                s(p.and_then(|p| p.get("os"))),
                s(p.and_then(|p| p.get("architecture"))),
            ) {
                (Some(os), Some(architecture)) if os != "unknown" && attests.is_none() => {
                    Some(Platform {
                        os,
                        architecture,
                        variant: s(p.and_then(|p| p.get("variant"))),
                    })
                }
                _ => None,
            };
            Ok(Entry {
                size: e.get("size").and_then(Value::as_u64).unwrap_or(0),
                digest,
                platform,
                attests,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(arch: &str) -> Platform {
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    #[test]
    fn images_then_attestations_and_read_back() {
        let images = vec![
            PlatformImage {
                platform: p("amd64"),
                manifest: Blob::of(b"a"),
                attestation: Some(Blob::of(b"att-a")),
            },
            PlatformImage {
                platform: Platform {
                    variant: Some("v8".into()),
                    ..p("arm64")
                },
                manifest: Blob::of(b"b"),
                attestation: Some(Blob::of(b"att-b")),
            },
        ];
        let bytes = build(&images, &Default::default());
        assert_eq!(bytes, build(&images, &Default::default()));
        assert!(is_index(&bytes));
        let e = entries(&bytes, "x").unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].platform.as_ref().unwrap().architecture, "amd64");
        assert_eq!(
            e[1].platform.as_ref().unwrap().variant.as_deref(),
            Some("v8")
        );
        assert!(e[2].platform.is_none());
        assert_eq!(e[2].attests.as_deref(), Some(sha256_digest(b"a").as_str()));
        assert_eq!(e[3].attests.as_deref(), Some(sha256_digest(b"b").as_str()));
        assert!(!is_index(
            br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
        ));
    }
}
