//! Exporters: an image (a manifest in a [`BlobSource`]) to an OCI image layout directory, an OCI
//! layout tar, or a Docker-loadable tar (OCI layout plus `manifest.json`, like `docker save` of
//! Docker 25+, which `docker load` 20.10+, podman and skopeo accept).
//!
//! Output is deterministic: tar entries sorted by path, fixed mtime (`ExportOptions::mtime`,
//! 0 or `SOURCE_DATE_EPOCH`), uid/gid 0, fixed modes. Blobs are streamed from the source and
//! verified against their digests while copied; output goes to a temp file (or directory) that
//! is renamed into place only when complete.

use super::manifest::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MEDIA_INDEX, MEDIA_MANIFEST};
use super::{
    BlobSource, HashingReader, digest_hex, invalid, manifest, sha256_digest, write_atomic,
};
use oci_spec::image::ImageManifest;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

/// Manifests and configs larger than this are refused (they are small JSON documents).
pub(crate) const MAX_JSON: u64 = 8 << 20;

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Image names (`app:1`, `registry:5000/x/app`); go into `index.json` annotations and the
    /// Docker `RepoTags`. May be empty.
    pub names: Vec<String>,
    /// mtime of every tar entry: 0, or `SOURCE_DATE_EPOCH`.
    pub mtime: u64,
}

enum Item {
    Dir,
    Bytes(Vec<u8>),
    Blob { digest: String, size: u64 },
}

/// Everything the layout contains, by path; BTreeMap = sorted, deterministic order.
fn plan(
    src: &dyn BlobSource,
    manifest_digest: &str,
    opts: &ExportOptions,
    docker: bool,
) -> io::Result<BTreeMap<String, Item>> {
    let mbytes = read_small_blob(src, manifest_digest)?;
    let mut out = BTreeMap::new();
    out.insert("blobs/".to_string(), Item::Dir);
    out.insert("blobs/sha256/".to_string(), Item::Dir);
    let mut add_blob = |digest: &str, size: u64| -> io::Result<String> {
        let path = format!("blobs/sha256/{}", digest_hex(digest)?);
        out.insert(
            path.clone(),
            Item::Blob {
                digest: digest.to_string(),
                size,
            },
        );
        Ok(path)
    };
    add_blob(manifest_digest, mbytes.len() as u64)?;
    // An index (a multi-platform result): every entry's manifest with its config and layers
    // (attestation manifests alike); `index.json` points at the index.
    let is_index = super::index::is_index(&mbytes);
    let mut docker_entries = Vec::new();
    let children = if is_index {
        if docker {
            return Err(invalid(format!(
                "{manifest_digest} is a multi-platform image index; a Docker archive holds one \
                 platform's image"
            )));
        }
        super::index::entries(&mbytes, manifest_digest)?
            .into_iter()
            .map(|e| e.digest)
            .collect()
    } else {
        vec![manifest_digest.to_string()]
    };
    for child in &children {
        let bytes = if is_index {
            read_small_blob(src, child)?
        } else {
            mbytes.clone()
        };
        let m: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("manifest {child}: {e}")))?;
        if is_index {
            add_blob(child, bytes.len() as u64)?;
        }
        let config_path = add_blob(m.config().digest().as_ref(), m.config().size())?;
        let mut layer_paths = Vec::new();
        for l in m.layers() {
            layer_paths.push(add_blob(l.digest().as_ref(), l.size())?);
        }
        docker_entries.push((config_path, layer_paths));
    }

    let top_type = if is_index {
        MEDIA_INDEX
    } else {
        MEDIA_MANIFEST
    };
    let mdesc = manifest::descriptor(top_type, manifest_digest, mbytes.len() as u64)?;
    let manifests = if opts.names.is_empty() {
        vec![mdesc]
    } else {
        opts.names
            .iter()
            .map(|n| {
                let full = normalize_name(n);
                manifest::with_annotations(
                    mdesc.clone(),
                    &[
                        (ANNOTATION_IMAGE_NAME, &full),
                        (ANNOTATION_REF_NAME, tag_of(&full)),
                    ],
                )
            })
            .collect()
    };
    out.insert(
        "index.json".into(),
        Item::Bytes(manifest::image_index(manifests)?),
    );
    out.insert(
        "oci-layout".into(),
        Item::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
    );
    if docker {
        let tags: Vec<String> = opts.names.iter().map(|n| docker_tag(n)).collect();
        let (config_path, layer_paths) = docker_entries.remove(0);
        let dm =
            serde_json::json!([{ "Config": config_path, "RepoTags": tags, "Layers": layer_paths }]);
        out.insert(
            "manifest.json".into(),
            Item::Bytes(serde_json::to_vec(&dm)?),
        );
    }
    Ok(out)
}

pub(crate) fn read_small_blob(src: &dyn BlobSource, digest: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    src.open_blob(digest)?
        .take(MAX_JSON + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_JSON {
        return Err(invalid(format!(
            "blob {digest} is too large for a JSON document"
        )));
    }
    let got = sha256_digest(&buf);
    if got != digest {
        return Err(invalid(format!(
            "blob {digest} is corrupt (content hashes to {got})"
        )));
    }
    Ok(buf)
}

/// Copy blob `digest` (exactly `size` bytes) to `w`, verifying digest and size.
fn copy_blob(
    src: &dyn BlobSource,
    digest: &str,
    size: u64,
    w: &mut dyn FnMut(&mut dyn Read) -> io::Result<()>,
) -> io::Result<()> {
    let mut hr = HashingReader::new(src.open_blob(digest)?.take(size));
    // Read in 1 MiB pieces (a layer is copied through a tar writer, which asks for 8 KiB).
    w(&mut io::BufReader::with_capacity(1 << 20, &mut hr))?;
    let (got, n) = hr.finish();
    if n != size {
        return Err(invalid(format!(
            "blob {digest}: expected {size} bytes, source has {n}"
        )));
    }
    if got != digest {
        return Err(invalid(format!(
            "blob {digest} is corrupt (content hashes to {got})"
        )));
    }
    Ok(())
}

fn header(path: &str, size: u64, mtime: u64, dir: bool) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(if dir { 0o755 } else { 0o644 });
    h.set_entry_type(if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    });
    h.set_cksum();
    Ok(h)
}

fn write_tar(
    src: &dyn BlobSource,
    items: &BTreeMap<String, Item>,
    mtime: u64,
    w: &mut dyn Write,
) -> io::Result<()> {
    let mut b = tar::Builder::new(w);
    for (path, item) in items {
        match item {
            Item::Dir => b.append(&header(path, 0, mtime, true)?, io::empty())?,
            Item::Bytes(bytes) => {
                b.append(&header(path, bytes.len() as u64, mtime, false)?, &bytes[..])?
            }
            Item::Blob { digest, size } => {
                let h = header(path, *size, mtime, false)?;
                copy_blob(src, digest, *size, &mut |r| b.append(&h, r))?;
            }
        }
    }
    b.into_inner()?.flush()
}

fn export_tar(
    src: &dyn BlobSource,
    manifest_digest: &str,
    opts: &ExportOptions,
    dest: &Path,
    docker: bool,
) -> io::Result<()> {
    let items = plan(src, manifest_digest, opts, docker)?;
    write_atomic(dest, |f| {
        let mut w = crate::sys::DirectWriter::new(f);
        write_tar(src, &items, opts.mtime, &mut w)?;
        w.flush()
    })
}

/// Write an OCI layout tar (`docker`: with `manifest.json`) to `w`, e.g. standard output for
/// `-o type=oci,dest=-`.
pub fn export_tar_to(
    src: &dyn BlobSource,
    manifest_digest: &str,
    opts: &ExportOptions,
    docker: bool,
    w: &mut dyn Write,
) -> io::Result<()> {
    let items = plan(src, manifest_digest, opts, docker)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, w);
    write_tar(src, &items, opts.mtime, &mut w)?;
    w.flush()
}

/// Export as an OCI image layout tar (`skopeo ... oci-archive:FILE`).
pub fn export_oci_tar(
    src: &dyn BlobSource,
    manifest_digest: &str,
    opts: &ExportOptions,
    dest: &Path,
) -> io::Result<()> {
    export_tar(src, manifest_digest, opts, dest, false)
}

/// Export as a Docker-loadable tar: OCI layout plus `manifest.json`.
pub fn export_docker_tar(
    src: &dyn BlobSource,
    manifest_digest: &str,
    opts: &ExportOptions,
    dest: &Path,
) -> io::Result<()> {
    export_tar(src, manifest_digest, opts, dest, true)
}

/// Export as an OCI image layout directory. `dest` must not exist, be empty, or be an OCI layout
/// (which is replaced).
pub fn export_oci_dir(
    src: &dyn BlobSource,
    manifest_digest: &str,
    opts: &ExportOptions,
    dest: &Path,
) -> io::Result<()> {
    let items = plan(src, manifest_digest, opts, false)?;
    if dest.exists() {
        let empty = fs::read_dir(dest)?.next().is_none();
        if !empty && !dest.join("oci-layout").is_file() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not an OCI layout; refusing to replace it",
                    dest.display()
                ),
            ));
        }
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".wbuild-tmp-")
        .tempdir_in(parent)?;
    for (path, item) in &items {
        let p = tmp.path().join(path);
        match item {
            Item::Dir => fs::create_dir_all(&p)?,
            Item::Bytes(bytes) => fs::write(&p, bytes)?,
            Item::Blob { digest, size } => {
                let mut f = fs::File::create(&p)?;
                copy_blob(src, digest, *size, &mut |r| io::copy(r, &mut f).map(|_| ()))?;
                f.sync_all()?;
            }
        }
    }
    let tmp = tmp.keep();
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::rename(&tmp, dest).inspect_err(|_| {
        let _ = fs::remove_dir_all(&tmp);
    })
}

/// `app` → `docker.io/library/app:latest`, `reg:5000/x/app:1` unchanged.
pub fn normalize_name(name: &str) -> String {
    let (domain, rest) = match name.split_once('/') {
        Some((d, r)) if d.contains('.') || d.contains(':') || d == "localhost" => {
            (d.to_string(), r.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let rest = if domain == "docker.io" && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest
    };
    let last = rest.rsplit('/').next().unwrap_or("");
    let tagged = last.contains(':') || last.contains('@');
    format!("{domain}/{rest}{}", if tagged { "" } else { ":latest" })
}

/// The tag of a normalized name (`...:1` → `1`).
fn tag_of(full: &str) -> &str {
    let last = full.rsplit('/').next().unwrap_or(full);
    match last.split_once('@') {
        Some((_, d)) => d,
        None => last.rsplit_once(':').map_or("latest", |(_, t)| t),
    }
}

/// Docker's `RepoTags` form: `app:1`, `x/app:latest`, `reg:5000/x/app:1`.
fn docker_tag(name: &str) -> String {
    let full = normalize_name(name);
    let short = full.strip_prefix("docker.io/").unwrap_or(&full);
    short.strip_prefix("library/").unwrap_or(short).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(normalize_name("app"), "docker.io/library/app:latest");
        assert_eq!(normalize_name("app:1"), "docker.io/library/app:1");
        assert_eq!(normalize_name("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_name("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(tag_of("localhost:5000/app:latest"), "latest");
        assert_eq!(tag_of("docker.io/library/app:1"), "1");
        assert_eq!(docker_tag("app:1"), "app:1");
        assert_eq!(docker_tag("me/app"), "me/app:latest");
        assert_eq!(docker_tag("ghcr.io/me/app:2"), "ghcr.io/me/app:2");
    }
}
