//! Images as they leave the store: compressed on the way out.
//!
//! A build step stores its layer as a plain tar (its blob digest is its diff_id), as BuildKit
//! keeps a layer that stays in dockerd uncompressed: the store, `--load` and later steps never
//! pay for a compression nobody reads. An image that goes to a registry, an OCI layout, a
//! docker archive or an exported build cache is compressed then, by [`for_export`]: every
//! uncompressed layer of the manifest (or of each manifest of an index) is replaced by its
//! compressed blob, in the build's `--compression`. Layers that are compressed already (pulled
//! ones) go as they are, as BuildKit does without `force-compression`. The config does not
//! change: its `rootfs.diff_ids` are the tars' digests either way.
//!
//! Each compressed form is remembered in `cache/layer-variants/<tar hex>.<compression>` (the
//! compressed blob's digest and size), so a second export or push of a layer compresses
//! nothing; the memo is trusted only while its blob is in the store with that size.
//! An index's attestation manifests follow their image: the reference annotation and the
//! in-toto statement's subject name the compressed manifest.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::index::{ANNOTATION_REFERENCE_DIGEST, ANNOTATION_REFERENCE_TYPE, ATTESTATION_MANIFEST};
use super::manifest::{self, DOCKER_MEDIA_LIST, DOCKER_MEDIA_MANIFEST, MEDIA_INDEX};
use crate::snapshot::{Compression, LayerWriter};
use crate::store::{Digest, Store};

/// Docker's media type of an uncompressed layer (`docker save`, legacy archives).
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker's media type of a gzip layer.
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The in-toto statement layer of an attestation manifest.
const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";

/// A manifest or index as it is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Its digest (the input's own when nothing needed compressing).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// Whether a layer of this media type is an uncompressed tar.
pub fn is_uncompressed(media_type: &str) -> bool {
    media_type == manifest::MEDIA_LAYER_TAR || media_type == DOCKER_LAYER_TAR
}

/// The manifest or index `digest` of the store with every uncompressed layer compressed as
/// `c` (stored, with the new manifests, in the store). With [`Compression::None`], or when no
/// layer is uncompressed, it is the input itself.
pub fn for_export(store: &Store, digest: &Digest, c: Compression) -> anyhow::Result<Exported> {
    Exporter {
        store,
        c,
        done: HashMap::new(),
    }
    .document(digest)
}

/// The compressed blob (digest, size, media type) of the uncompressed layer blob `tar`, made
/// once per compression and then remembered. `docker` asks for Docker's media type names.
pub fn compressed_layer(
    store: &Store,
    tar: &Digest,
    c: Compression,
    docker: bool,
) -> anyhow::Result<(Digest, u64, &'static str)> {
    let media_type = match c {
        Compression::Gzip { .. } if docker => DOCKER_LAYER_GZIP,
        Compression::None if docker => DOCKER_LAYER_TAR,
        c => c.media_type(),
    };
    if c == Compression::None {
        return Ok((*tar, store.blob_size(tar)?, media_type));
    }
    let memo = store
        .layer_variants_dir()
        .join(format!("{}.{}", tar.hex(), variant_name(c)));
    if let Some((d, size)) = read_memo(&memo)
        && store.has_blob(&d)
        && store.blob_size(&d).ok() == Some(size)
    {
        return Ok((d, size, media_type));
    }
    let _span = crate::progress::profile::span("export: compress layer");
    let src = store
        .stream_blob(tar)
        .with_context(|| format!("layer {tar} is not in the store; `wbuild check` finds why"))?;
    // The LayerWriter hashes what it writes (the blob digest): the blob writer need not.
    let mut w = LayerWriter::new(store.blob_writer_unhashed()?, c)?;
    copy_large(src, &mut w).with_context(|| format!("compressing layer {tar}"))?;
    let (digests, blob) = w.finish()?;
    if digests.diff_id != tar.to_string() {
        bail!(
            "layer blob {tar} of the store holds other content ({}); `wbuild check` finds the \
             damage and `wbuild prune` removes it",
            digests.diff_id
        );
    }
    let (d, size) = blob.finish(Some(&digests.digest.parse()?))?;
    std::fs::create_dir_all(store.layer_variants_dir())?;
    crate::sys::write_atomic(&memo, |f| writeln!(f, "{d} {size}"))
        .with_context(|| format!("writing {}", memo.display()))?;
    Ok((d, size, media_type))
}

fn variant_name(c: Compression) -> String {
    match c {
        Compression::Gzip { level } => format!("gzip-{level}"),
        Compression::Zstd { level } => format!("zstd-{level}"),
        Compression::None => "tar".into(),
    }
}

fn read_memo(path: &std::path::Path) -> Option<(Digest, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (d, size) = text.trim_end().split_once(' ')?;
    Some((d.parse().ok()?, size.parse().ok()?))
}

/// `io::copy` with 1 MiB reads (the encoder deflates 1 MiB chunks on several threads).
fn copy_large(mut src: impl Read, dst: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let k = match src.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..k])?;
        n += k as u64;
    }
}

struct Exporter<'a> {
    store: &'a Store,
    c: Compression,
    /// Documents already converted in this call (an index may name one twice).
    done: HashMap<Digest, Exported>,
}

impl Exporter<'_> {
    fn read(&self, d: &Digest) -> anyhow::Result<(Vec<u8>, Value)> {
        let mut bytes = Vec::new();
        self.store
            .open_blob(d)
            .with_context(|| format!("manifest {d} is not in the store"))?
            .take(super::export::MAX_JSON)
            .read_to_end(&mut bytes)?;
        let v = serde_json::from_slice(&bytes).with_context(|| format!("{d} is not JSON"))?;
        Ok((bytes, v))
    }

    fn put(&self, v: &Value) -> anyhow::Result<Exported> {
        let bytes = manifest::canonical_json(v);
        let (digest, size) = self.store.put_blob_from_reader(&bytes[..], None)?;
        Ok(Exported { digest, size })
    }

    fn document(&mut self, d: &Digest) -> anyhow::Result<Exported> {
        if let Some(e) = self.done.get(d) {
            return Ok(*e);
        }
        let (bytes, v) = self.read(d)?;
        let same = Exported {
            digest: *d,
            size: bytes.len() as u64,
        };
        let out = if self.c == Compression::None {
            same
        } else if super::index::is_index(&bytes) {
            self.index(v)?.unwrap_or(same)
        } else {
            self.manifest(v)?.unwrap_or(same)
        };
        self.done.insert(*d, out);
        Ok(out)
    }

    /// The manifest with its uncompressed layers compressed; None when it has none.
    fn manifest(&mut self, mut v: Value) -> anyhow::Result<Option<Exported>> {
        let docker = v.get("mediaType").and_then(Value::as_str) == Some(DOCKER_MEDIA_MANIFEST);
        let mut changed = false;
        for layer in v
            .get_mut("layers")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mt = layer.get("mediaType").and_then(Value::as_str).unwrap_or("");
            if !is_uncompressed(mt) {
                continue;
            }
            let tar: Digest = str_field(layer, "digest")?.parse()?;
            let (d, size, media_type) = compressed_layer(self.store, &tar, self.c, docker)?;
            layer["digest"] = json!(d.to_string());
            layer["size"] = json!(size);
            layer["mediaType"] = json!(media_type);
            changed = true;
        }
        if !changed {
            return Ok(None);
        }
        Ok(Some(self.put(&v)?))
    }

    /// The index with each image converted and its attestations pointed at the converted
    /// images; None when nothing changed.
    fn index(&mut self, mut v: Value) -> anyhow::Result<Option<Exported>> {
        let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if mt != MEDIA_INDEX && mt != DOCKER_MEDIA_LIST && !mt.is_empty() {
            bail!("unknown index media type {mt:?}");
        }
        let mut moved: HashMap<String, Exported> = HashMap::new();
        let Some(list) = v.get_mut("manifests").and_then(Value::as_array_mut) else {
            bail!("an index without `manifests`");
        };
        // Images (and nested indexes) first; then the attestations about them.
        for entry in list.iter_mut().filter(|e| attests(e).is_none()) {
            let old = str_field(entry, "digest")?.to_string();
            let e = self.document(&old.parse()?)?;
            if e.digest.to_string() != old {
                entry["digest"] = json!(e.digest.to_string());
                entry["size"] = json!(e.size);
                moved.insert(old, e);
            }
        }
        if moved.is_empty() {
            return Ok(None);
        }
        for entry in list.iter_mut() {
            let Some(subject) = attests(entry) else {
                continue;
            };
            let Some(image) = moved.get(&subject).copied() else {
                continue;
            };
            let old: Digest = str_field(entry, "digest")?.parse()?;
            let a = self.retarget_attestation(&old, &subject, &image.digest)?;
            entry["digest"] = json!(a.digest.to_string());
            entry["size"] = json!(a.size);
            entry["annotations"][ANNOTATION_REFERENCE_DIGEST] = json!(image.digest.to_string());
        }
        Ok(Some(self.put(&v)?))
    }

    /// The attestation manifest `att` with every in-toto statement's subject digest `from`
    /// replaced by `to` (its layers and config rewritten to match).
    fn retarget_attestation(
        &self,
        att: &Digest,
        from: &str,
        to: &Digest,
    ) -> anyhow::Result<Exported> {
        let (_, mut m) = self.read(att)?;
        let from_hex = from.split_once(':').map_or(from, |(_, h)| h).to_string();
        let mut diff_ids = Vec::new();
        for layer in m
            .get_mut("layers")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let d: Digest = str_field(layer, "digest")?.parse()?;
            if layer.get("mediaType").and_then(Value::as_str) == Some(MEDIA_IN_TOTO) {
                let (_, mut statement) = self.read(&d)?;
                for s in statement
                    .get_mut("subject")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if s["digest"]["sha256"].as_str() == Some(&from_hex) {
                        s["digest"]["sha256"] = json!(to.hex());
                    }
                }
                let e = self.put(&statement)?;
                layer["digest"] = json!(e.digest.to_string());
                layer["size"] = json!(e.size);
                diff_ids.push(e.digest.to_string());
            } else {
                diff_ids.push(d.to_string());
            }
        }
        // The config lists the (uncompressed) layers as its diff_ids.
        let cd: Digest = str_field(&m["config"], "digest")?.parse()?;
        let (_, mut config) = self.read(&cd)?;
        config["rootfs"]["diff_ids"] = json!(diff_ids);
        let c = self.put(&config)?;
        m["config"]["digest"] = json!(c.digest.to_string());
        m["config"]["size"] = json!(c.size);
        self.put(&m)
    }
}

/// The image an index entry attests, when it is an attestation manifest.
fn attests(entry: &Value) -> Option<String> {
    let a = entry.get("annotations")?;
    (a.get(ANNOTATION_REFERENCE_TYPE)?.as_str()? == ATTESTATION_MANIFEST)
        .then(|| {
            a.get(ANNOTATION_REFERENCE_DIGEST)?
                .as_str()
                .map(str::to_string)
        })
        .flatten()
}

fn str_field<'v>(v: &'v Value, key: &str) -> anyhow::Result<&'v str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("a descriptor without `{key}`: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::index::{self, Blob, PlatformImage};
    use crate::image::provenance;

    fn put(store: &Store, bytes: &[u8]) -> Blob {
        store.put_blob_from_reader(bytes, None).unwrap();
        Blob::of(bytes)
    }

    fn json_blob(store: &Store, d: &str) -> Value {
        let mut b = Vec::new();
        store
            .open_blob(&d.parse().unwrap())
            .unwrap()
            .read_to_end(&mut b)
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    /// A one-layer image whose layer is a plain tar; returns (manifest, tar digest, tar).
    fn image(store: &Store) -> (Blob, String, Vec<u8>) {
        let mut tar = tar::Builder::new(Vec::new());
        let data = b"some text, some text, some text\n".repeat(1000);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "f", &data[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let layer = put(store, &tar);
        let config = put(
            store,
            &manifest::canonical_json(&json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
            })),
        );
        let m = put(
            store,
            &manifest::canonical_json(&json!({
                "schemaVersion": 2,
                "mediaType": manifest::MEDIA_MANIFEST,
                "config": { "mediaType": manifest::MEDIA_CONFIG, "digest": config.digest, "size": config.size },
                "layers": [{ "mediaType": manifest::MEDIA_LAYER_TAR, "digest": layer.digest, "size": layer.size }],
            })),
        );
        (m, layer.digest, tar)
    }

    #[test]
    fn an_index_leaves_compressed_with_its_attestations_following() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (m, tar_digest, tar) = image(&store);
        let statement = manifest::canonical_json(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{ "name": "_", "digest": { "sha256": m.digest.trim_start_matches("sha256:") } }],
            "predicate": {},
        }));
        let a = provenance::attestation(statement);
        for b in [&a.statement, &a.config, &a.manifest] {
            put(&store, b);
        }
        let idx = put(
            &store,
            &index::build(
                &[PlatformImage {
                    platform: crate::ir::host_platform(),
                    manifest: m.clone(),
                    attestation: Some(Blob::of(&a.manifest)),
                }],
                &Default::default(),
            ),
        );
        let gz = Compression::Gzip { level: 6 };
        let e = for_export(&store, &idx.digest.parse().unwrap(), gz).unwrap();
        assert_ne!(e.digest.to_string(), idx.digest);

        let entries = index::entries(
            &json_blob(&store, &e.digest.to_string())
                .to_string()
                .into_bytes(),
            "index",
        )
        .unwrap();
        let image = entries.iter().find(|x| x.attests.is_none()).unwrap();
        let att = entries.iter().find(|x| x.attests.is_some()).unwrap();
        assert_ne!(image.digest, m.digest);
        assert_eq!(att.attests.as_deref(), Some(image.digest.as_str()));
        // The image: the same config, its layer gzip, which decompresses to the tar.
        let new_m = json_blob(&store, &image.digest);
        let old_m = json_blob(&store, &m.digest);
        assert_eq!(new_m["config"], old_m["config"]);
        let layer = &new_m["layers"][0];
        assert_eq!(layer["mediaType"], manifest::MEDIA_LAYER_GZIP);
        let mut gunzipped = Vec::new();
        flate2::read::GzDecoder::new(
            store
                .open_blob(&layer["digest"].as_str().unwrap().parse().unwrap())
                .unwrap(),
        )
        .read_to_end(&mut gunzipped)
        .unwrap();
        assert_eq!(gunzipped, tar);
        assert!(layer["size"].as_u64().unwrap() < tar.len() as u64 / 4);
        // The attestation's statement names the compressed image; its config lists the
        // new statement.
        let att_m = json_blob(&store, &att.digest);
        let st_digest = att_m["layers"][0]["digest"].as_str().unwrap();
        let st = json_blob(&store, st_digest);
        assert_eq!(
            st["subject"][0]["digest"]["sha256"],
            image.digest.trim_start_matches("sha256:")
        );
        let att_config = json_blob(&store, att_m["config"]["digest"].as_str().unwrap());
        assert_eq!(att_config["rootfs"]["diff_ids"][0], st_digest);

        // Again: the remembered layer, the same index; with no compression, the input.
        let layer_blobs = store.list_blobs().unwrap().len();
        let again = for_export(&store, &idx.digest.parse().unwrap(), gz).unwrap();
        assert_eq!(again, e);
        assert_eq!(store.list_blobs().unwrap().len(), layer_blobs);
        let none = for_export(&store, &idx.digest.parse().unwrap(), Compression::None).unwrap();
        assert_eq!(none.digest.to_string(), idx.digest);
        // A compressed image is left as it is.
        assert_eq!(for_export(&store, &e.digest, gz).unwrap(), e);

        // A tar blob whose content was damaged is refused, not compressed.
        let tar_path = store.blob_path(&tar_digest.parse().unwrap());
        std::fs::remove_dir_all(store.layer_variants_dir()).unwrap();
        let mut bad = tar.clone();
        bad[600] ^= 1;
        std::fs::write(&tar_path, &bad).unwrap();
        let err = for_export(
            &store,
            &m.digest.parse().unwrap(),
            Compression::Zstd { level: 3 },
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("holds other content"),
            "{err:#}"
        );
    }
}
