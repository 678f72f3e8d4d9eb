//! Import of image archives into a [`BlobSink`]: `docker save` tars (legacy `<id>/layer.tar`
//! layout and the newer OCI-blobs layout, both driven by `manifest.json`) and OCI image layouts
//! (tar or directory, driven by `index.json`).
//!
//! Tars are indexed in one pass over headers and then read by seeking, so blobs stream straight
//! from the file into the sink and are never held in memory. Every blob is verified: against its
//! descriptor digest and size (OCI), against the config's `diff_ids` (docker archives, whose layer
//! paths carry no digest), and paths named by `manifest.json` or links inside the archive must stay
//! inside it. For docker archives an OCI manifest is generated (layers keep their bytes, typed
//! `tar`, `tar+gzip` or `tar+zstd` by sniffing) and stored in the sink too.

use super::config::ImageConfig;
use super::export::MAX_JSON;
use super::manifest::{
    self, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, Compression, DOCKER_MEDIA_LIST, MEDIA_CONFIG,
    MEDIA_INDEX,
};
use super::{BlobSink, HashingReader, digest_hex, invalid, sha256_digest};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One image found in an archive, with all its blobs now in the sink.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// Digest of the (stored) OCI or Docker manifest.
    pub manifest_digest: String,
    /// The manifest (read by the round-trip tests; the catalog reads the stored blobs).
    #[cfg_attr(not(test), allow(dead_code))]
    pub manifest: ImageManifest,
    /// The image config.
    #[cfg_attr(not(test), allow(dead_code))]
    pub config: ImageConfig,
    /// Names from `RepoTags` (docker archive) or `index.json` annotations (OCI).
    pub names: Vec<String>,
}

/// Import every image of a docker-archive or OCI layout, given as a tar file or a directory.
pub fn import_path(path: &Path, sink: &dyn BlobSink) -> io::Result<Vec<ImportedImage>> {
    let ar = if path.is_dir() {
        Archive::Dir(path.to_path_buf())
    } else {
        Archive::tar(path)?
    };
    if ar.exists("manifest.json") {
        import_docker(&ar, sink)
    } else if ar.exists("index.json") {
        import_oci(&ar, sink)
    } else {
        Err(invalid(format!(
            "{}: neither a docker archive (no manifest.json) nor an OCI layout (no index.json)",
            path.display()
        )))
    }
}

enum Archive {
    Dir(PathBuf),
    /// Entry path → (data offset, size).
    Tar {
        file: PathBuf,
        entries: HashMap<String, (u64, u64)>,
    },
}

/// Clean a relative archive path; `..` may not climb above the root, absolute paths are refused.
fn clean_rel(p: &str) -> io::Result<String> {
    if p.starts_with('/') {
        return Err(invalid(format!("absolute path {p:?} in archive")));
    }
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(invalid(format!("path {p:?} leads outside the archive")));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

impl Archive {
    fn tar(path: &Path) -> io::Result<Self> {
        let mut entries = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let mut a = tar::Archive::new(fs::File::open(path)?);
        for e in a.entries_with_seek()? {
            let e = e?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let name = clean_rel(&name)?;
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    entries.insert(name, (e.raw_file_position(), e.size()));
                }
                tar::EntryType::Symlink => {
                    let target = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    let target =
                        target.ok_or_else(|| invalid(format!("symlink {name} has no target")))?;
                    let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                    links.push((name.clone(), clean_rel(&format!("{dir}/{target}"))?));
                }
                tar::EntryType::Link => {
                    let target = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned());
                    let target =
                        target.ok_or_else(|| invalid(format!("hard link {name} has no target")))?;
                    links.push((name, clean_rel(&target)?));
                }
                _ => {}
            }
        }
        // Resolve links (old `docker save` links duplicate layers) to regular entries.
        for _ in 0..8 {
            let mut progress = false;
            links.retain(|(name, target)| match entries.get(target).copied() {
                Some(v) => {
                    entries.insert(name.clone(), v);
                    progress = true;
                    false
                }
                None => true,
            });
            if !progress {
                break;
            }
        }
        Ok(Archive::Tar {
            file: path.to_path_buf(),
            entries,
        })
    }

    fn exists(&self, p: &str) -> bool {
        match self {
            Archive::Dir(root) => root.join(p).is_file(),
            Archive::Tar { entries, .. } => entries.contains_key(p),
        }
    }

    /// Open a (cleaned, in-archive) path; returns the reader and its size.
    fn open(&self, p: &str) -> io::Result<(Box<dyn Read>, u64)> {
        let p = clean_rel(p)?;
        let missing = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{p} is missing from the archive"),
            )
        };
        match self {
            Archive::Dir(root) => {
                let full = root.join(&p);
                let md = fs::symlink_metadata(&full).map_err(|_| missing())?;
                if !md.is_file() {
                    return Err(invalid(format!("{p} in the layout is not a regular file")));
                }
                Ok((Box::new(fs::File::open(full)?), md.len()))
            }
            Archive::Tar { file, entries } => {
                let (off, size) = *entries.get(&p).ok_or_else(missing)?;
                let mut f = fs::File::open(file)?;
                f.seek(SeekFrom::Start(off))?;
                Ok((
                    Box::new(io::BufReader::with_capacity(1 << 20, f).take(size)),
                    size,
                ))
            }
        }
    }

    fn read_small(&self, p: &str) -> io::Result<Vec<u8>> {
        let (r, size) = self.open(p)?;
        if size > MAX_JSON {
            return Err(invalid(format!(
                "{p} is too large ({size} bytes) for a JSON document"
            )));
        }
        let mut buf = Vec::new();
        r.take(MAX_JSON).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Read a blob by descriptor (OCI layouts), verifying digest and size.
    fn read_blob_small(&self, d: &Descriptor) -> io::Result<Vec<u8>> {
        let digest = d.digest().to_string();
        let bytes = self.read_small(&blob_path(&digest)?)?;
        let got = sha256_digest(&bytes);
        if got != digest || bytes.len() as u64 != d.size() {
            return Err(invalid(format!(
                "blob {digest} is corrupt: content hashes to {got}, {} bytes (descriptor says {})",
                bytes.len(),
                d.size()
            )));
        }
        Ok(bytes)
    }
}

fn blob_path(digest: &str) -> io::Result<String> {
    Ok(format!("blobs/sha256/{}", digest_hex(digest)?))
}

/// Stream `p` into the sink; `expected` digest (and size) are checked.
fn put(
    ar: &Archive,
    sink: &dyn BlobSink,
    p: &str,
    expected: Option<(&str, u64)>,
) -> io::Result<(String, u64)> {
    let (mut r, size) = ar.open(p)?;
    if let Some((d, want)) = expected
        && want != size
    {
        return Err(invalid(format!(
            "blob {d}: descriptor says {want} bytes, archive has {size}"
        )));
    }
    let (digest, n) = sink
        .put_blob(&mut r, expected.map(|e| e.0))
        .map_err(|e| io::Error::new(e.kind(), format!("{p}: {e}")))?;
    if let Some((d, _)) = expected
        && d != digest
    {
        return Err(invalid(format!(
            "{p}: digest mismatch: expected {d}, content is {digest}"
        )));
    }
    if n != size {
        return Err(invalid(format!("{p}: short read ({n} of {size} bytes)")));
    }
    Ok((digest, n))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a path names, if it is `blobs/sha256/<hex>` or `<hex>.json`.
fn digest_in_path(p: &str) -> Option<String> {
    let name = p
        .strip_prefix("blobs/sha256/")
        .or_else(|| p.strip_suffix(".json"))?;
    let d = format!("sha256:{name}");
    digest_hex(&d).ok()?;
    Some(d)
}

fn import_docker(ar: &Archive, sink: &dyn BlobSink) -> io::Result<Vec<ImportedImage>> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&ar.read_small("manifest.json")?)
            .map_err(|e| invalid(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = clean_rel(&entry.config)?;
        let config_bytes = ar.read_small(&config_path)?;
        let config_digest = sha256_digest(&config_bytes);
        if let Some(named) = digest_in_path(&config_path)
            && named != config_digest
        {
            return Err(invalid(format!(
                "config {config_path} is corrupt: content hashes to {config_digest}"
            )));
        }
        let config = ImageConfig::from_json(&config_bytes)
            .map_err(|e| invalid(format!("{config_path}: {e}")))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != entry.layers.len() {
            return Err(invalid(format!(
                "{config_path} lists {} diff_ids but manifest.json has {} layers",
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        sink.put_blob(&mut &config_bytes[..], Some(&config_digest))?;
        let config_desc =
            manifest::descriptor(MEDIA_CONFIG, &config_digest, config_bytes.len() as u64)?;

        let mut layers = Vec::new();
        for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
            let p = clean_rel(layer)?;
            let mut head = [0u8; 4];
            let (mut r, size) = ar.open(&p)?;
            let n = r.read(&mut head)?;
            let comp = Compression::detect(&head[..n]);
            let named = digest_in_path(&p);
            let (digest, _) = put(ar, sink, &p, named.as_deref().map(|d| (d, size)))?;
            let actual_diff = match comp {
                Compression::None => digest.clone(),
                c => diff_id_of(ar.open(&p)?.0, c)?,
            };
            if &actual_diff != diff_id {
                return Err(invalid(format!(
                    "layer {p} is corrupt: its content has diff_id {actual_diff}, the config says {diff_id}"
                )));
            }
            layers.push(manifest::descriptor(
                comp.layer_media_type(),
                &digest,
                size,
            )?);
        }
        let (m, mbytes, mdesc) = manifest::image_manifest(config_desc, layers)?;
        let manifest_digest = mdesc.digest().to_string();
        sink.put_blob(&mut &mbytes[..], Some(&manifest_digest))?;
        out.push(ImportedImage {
            manifest_digest,
            manifest: m,
            config,
            names: entry.repo_tags.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// sha256 of the uncompressed stream.
fn diff_id_of(r: Box<dyn Read>, c: Compression) -> io::Result<String> {
    let mut dec: Box<dyn Read> = match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        Compression::None => r,
    };
    let mut hr = HashingReader::new(&mut dec);
    io::copy(&mut hr, &mut io::sink())?;
    Ok(hr.finish().0)
}

fn import_oci(ar: &Archive, sink: &dyn BlobSink) -> io::Result<Vec<ImportedImage>> {
    if ar.exists("oci-layout") {
        let v: serde_json::Value = serde_json::from_slice(&ar.read_small("oci-layout")?)
            .map_err(|e| invalid(format!("oci-layout: {e}")))?;
        if v["imageLayoutVersion"] != "1.0.0" {
            return Err(invalid(format!(
                "unsupported OCI layout version {}",
                v["imageLayoutVersion"]
            )));
        }
    }
    let idx: ImageIndex = serde_json::from_slice(&ar.read_small("index.json")?)
        .map_err(|e| invalid(format!("index.json: {e}")))?;
    let mut out: Vec<ImportedImage> = Vec::new();
    for d in idx.manifests() {
        // One manifest listed under several names is imported once, with all its names.
        if let Some(seen) = out
            .iter_mut()
            .find(|i| i.manifest_digest == d.digest().as_ref())
        {
            seen.names.extend(names_of(d));
            continue;
        }
        visit(ar, sink, d, names_of(d), 0, &mut out)?;
    }
    Ok(out)
}

fn names_of(d: &Descriptor) -> Vec<String> {
    let a = d.annotations().as_ref();
    let get = |k| a.and_then(|a| a.get(k)).cloned();
    get(ANNOTATION_IMAGE_NAME)
        .or_else(|| get(ANNOTATION_REF_NAME))
        .into_iter()
        .collect()
}

fn visit(
    ar: &Archive,
    sink: &dyn BlobSink,
    d: &Descriptor,
    names: Vec<String>,
    depth: u32,
    out: &mut Vec<ImportedImage>,
) -> io::Result<()> {
    let mt = d.media_type().to_string();
    if mt == MEDIA_INDEX || mt == DOCKER_MEDIA_LIST {
        if depth > 4 {
            return Err(invalid("image indexes nested too deeply"));
        }
        let bytes = ar.read_blob_small(d)?;
        let idx: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("index {}: {e}", d.digest())))?;
        if depth == 0 && super::index::is_index(&bytes) {
            return import_index(ar, sink, d, &bytes, names, out);
        }
        for child in idx.manifests() {
            let attestation = child
                .annotations()
                .as_ref()
                .and_then(|a| a.get("vnd.docker.reference.type"))
                .is_some_and(|t| t == "attestation-manifest");
            if !attestation {
                visit(ar, sink, child, names.clone(), depth + 1, out)?;
            }
        }
        sink.put_blob(&mut &bytes[..], Some(d.digest().as_ref()))?;
        return Ok(());
    }
    let bytes = ar.read_blob_small(d)?;
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(format!("manifest {}: {e}", d.digest())))?;
    let config_bytes = ar.read_blob_small(m.config())?;
    let config = ImageConfig::from_json(&config_bytes)
        .map_err(|e| invalid(format!("config {}: {e}", m.config().digest())))?;
    if config.rootfs.diff_ids.len() != m.layers().len() {
        return Err(invalid(format!(
            "manifest {} has {} layers but its config lists {} diff_ids",
            d.digest(),
            m.layers().len(),
            config.rootfs.diff_ids.len()
        )));
    }
    sink.put_blob(&mut &config_bytes[..], Some(m.config().digest().as_ref()))?;
    for l in m.layers() {
        let digest = l.digest().to_string();
        put(ar, sink, &blob_path(&digest)?, Some((&digest, l.size())))?;
    }
    let manifest_digest = d.digest().to_string();
    sink.put_blob(&mut &bytes[..], Some(&manifest_digest))?;
    out.push(ImportedImage {
        manifest_digest,
        manifest: m,
        config,
        names,
    });
    Ok(())
}

/// An index `index.json` lists (a multi-platform image, e.g. `-o type=oci` of several
/// platforms): every entry's blobs, attestation manifests too, imported, and the index itself
/// is the image its names name (its first platform's manifest and config stand for it here).
fn import_index(
    ar: &Archive,
    sink: &dyn BlobSink,
    d: &Descriptor,
    bytes: &[u8],
    names: Vec<String>,
    out: &mut Vec<ImportedImage>,
) -> io::Result<()> {
    let mut entries = Vec::new();
    for e in super::index::entries(bytes, d.digest().as_ref())? {
        let child =
            super::manifest::descriptor(super::manifest::MEDIA_MANIFEST, &e.digest, e.size)?;
        let mut one = Vec::new();
        visit(ar, sink, &child, vec![], 1, &mut one)?;
        if e.platform.is_some() {
            entries.extend(one);
        }
    }
    let Some(first) = entries.into_iter().next() else {
        return Err(invalid(format!(
            "index {} has no image for any platform",
            d.digest()
        )));
    };
    sink.put_blob(&mut &bytes[..], Some(d.digest().as_ref()))?;
    out.push(ImportedImage {
        manifest_digest: d.digest().to_string(),
        manifest: first.manifest,
        config: first.config,
        names,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_cleaning() {
        assert_eq!(clean_rel("./a/./b").unwrap(), "a/b");
        assert_eq!(clean_rel("a/../b").unwrap(), "b");
        assert!(clean_rel("../etc/passwd").is_err());
        assert!(clean_rel("a/../../x").is_err());
        assert!(clean_rel("/etc/passwd").is_err());
        assert_eq!(
            digest_in_path(&format!("blobs/sha256/{}", "a".repeat(64))),
            Some(format!("sha256:{}", "a".repeat(64)))
        );
        assert_eq!(digest_in_path("abc/layer.tar"), None);
    }
}
