//! OCI image manifests and indexes (oci-spec types), layer media types, and canonical JSON.
//!
//! oci-spec keeps annotations in `HashMap`s, whose serialization order is random; every document
//! written here goes through [`canonical_json`] (object keys sorted recursively, compact), so the
//! same image always has the same manifest digest.

use super::{invalid, sha256_digest};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use serde::Serialize;
use std::collections::HashMap;
use std::io;

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MEDIA_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MEDIA_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Tag part of an image name, in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Full image name, as containerd and `docker save` put it in `index.json`.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_LAYER_TAR,
            Compression::Gzip => MEDIA_LAYER_GZIP,
            Compression::Zstd => MEDIA_LAYER_ZSTD,
        }
    }
    /// Sniff from the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
    /// From a layer media type (OCI or Docker).
    pub fn from_media_type(mt: &str) -> Option<Self> {
        if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if mt.ends_with("+zstd") || mt.ends_with(".tar.zstd") {
            Some(Compression::Zstd)
        } else if mt.ends_with(".tar") || mt.ends_with("rootfs.diff.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// A descriptor for `digest` (validated) of `size` bytes.
pub fn descriptor(media_type: &str, digest: &str, size: u64) -> io::Result<Descriptor> {
    super::digest_hex(digest)?;
    let d: oci_spec::image::Digest = digest
        .parse()
        .map_err(|e| invalid(format!("{digest}: {e}")))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, d))
}

/// Serialize with object keys sorted at every level (deterministic whatever the map types).
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<_> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort).collect())
            }
            v => v,
        }
    }
    let v = serde_json::to_value(value).expect("serializable");
    serde_json::to_vec(&sort(v)).expect("serializable")
}

/// An OCI image manifest for a config and layers; returns the manifest, its bytes and descriptor.
pub fn image_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> io::Result<(ImageManifest, Vec<u8>, Descriptor)> {
    annotated_manifest(config, layers, &Default::default())
}

/// [`image_manifest`] with `annotations` (`--annotation`); none gives the same bytes.
pub fn annotated_manifest(
    config: Descriptor,
    layers: Vec<Descriptor>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> io::Result<(ImageManifest, Vec<u8>, Descriptor)> {
    let mut b = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers);
    if !annotations.is_empty() {
        b = b.annotations(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    let m = b.build().map_err(|e| invalid(e.to_string()))?;
    let bytes = canonical_json(&m);
    let desc = descriptor(MEDIA_MANIFEST, &sha256_digest(&bytes), bytes.len() as u64)?;
    Ok((m, bytes, desc))
}

/// An OCI index over `manifests` (for `index.json` of a layout); returns its bytes.
pub fn image_index(manifests: Vec<Descriptor>) -> io::Result<Vec<u8>> {
    let idx: ImageIndex = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(canonical_json(&idx))
}

/// Set annotations on a descriptor.
pub fn with_annotations(mut d: Descriptor, annotations: &[(&str, &str)]) -> Descriptor {
    if !annotations.is_empty() {
        let m: HashMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.set_annotations(Some(m));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_shape() {
        let cfg = descriptor(MEDIA_CONFIG, &sha256_digest(b"{}"), 2).unwrap();
        let l1 = descriptor(MEDIA_LAYER_GZIP, &sha256_digest(b"a"), 1).unwrap();
        let l2 = descriptor(
            Compression::Zstd.layer_media_type(),
            &sha256_digest(b"b"),
            1,
        )
        .unwrap();
        let (m, bytes, desc) = image_manifest(cfg, vec![l1, l2]).unwrap();
        assert_eq!(m.layers().len(), 2);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], MEDIA_MANIFEST);
        assert_eq!(v["config"]["mediaType"], MEDIA_CONFIG);
        assert_eq!(v["layers"][0]["mediaType"], MEDIA_LAYER_GZIP);
        assert_eq!(v["layers"][1]["mediaType"], MEDIA_LAYER_ZSTD);
        assert_eq!(desc.size(), bytes.len() as u64);
        assert_eq!(desc.digest().to_string(), sha256_digest(&bytes));
        assert!(descriptor(MEDIA_CONFIG, "sha256:../x", 1).is_err());
    }

    #[test]
    fn index_is_deterministic_with_many_annotations() {
        let d = descriptor(MEDIA_MANIFEST, &sha256_digest(b"m"), 1).unwrap();
        let anns: Vec<(String, String)> = (0..20)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let refs: Vec<(&str, &str)> = anns.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = image_index(vec![with_annotations(d.clone(), &refs)]).unwrap();
        for _ in 0..5 {
            assert_eq!(
                image_index(vec![with_annotations(d.clone(), &refs)]).unwrap(),
                a
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(v["mediaType"], MEDIA_INDEX);
    }

    #[test]
    fn compression_detection() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"hello"), Compression::None);
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
    }
}
