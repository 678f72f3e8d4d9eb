//! Pulling: resolve a reference to a manifest (choosing the platform from an image index,
//! Docker manifest lists too), store the index, manifest and config blobs byte-exact, then
//! stream the missing layers into the store concurrently, each verified against its digest and
//! size by the store's blob writer (a failed or damaged download leaves no blob behind). Blobs
//! the store already has are never fetched. Also answers the same questions from the store
//! alone for digests it already holds.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt};
use oci_client::manifest::OciDescriptor;
use oci_spec::image::{Descriptor, ImageManifest};
use serde_json::Value;

use super::client::{Conn, Registry, explain};
use super::reference::ImageName;
use crate::image::ImageConfig;
use crate::image::manifest::{
    DOCKER_MEDIA_LIST, DOCKER_MEDIA_MANIFEST, MEDIA_INDEX, MEDIA_MANIFEST,
};
use crate::ir::Platform;
use crate::store::{Digest, Store, StoreError};

/// Manifest media types wbuild accepts from registries.
pub(crate) const MANIFEST_TYPES: [&str; 4] = [
    MEDIA_MANIFEST,
    MEDIA_INDEX,
    DOCKER_MEDIA_MANIFEST,
    DOCKER_MEDIA_LIST,
];

/// Layers downloaded at the same time.
const PARALLEL_LAYERS: usize = 4;

/// A reference resolved to an image manifest whose manifest and config are in the store.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: ImageName,
    /// What the reference points at (an index or a manifest): the digest that pins it.
    pub digest: Digest,
    /// The platform's image manifest.
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

impl Resolved {
    /// `host/repo[:tag]@digest`.
    pub fn pinned(&self) -> String {
        self.name.pinned(&self.digest.to_string())
    }

    /// Whether every layer is in the store.
    pub fn complete(&self, store: &Store) -> bool {
        self.manifest.layers().iter().all(|l| {
            l.digest()
                .to_string()
                .parse::<Digest>()
                .is_ok_and(|d| store.has_blob(&d))
        })
    }
}

/// What a manifest document is.
enum Kind {
    Index,
    Manifest,
}

fn kind_of(bytes: &[u8], what: &str) -> anyhow::Result<(Kind, Value)> {
    let v: Value = serde_json::from_slice(bytes)
        .with_context(|| format!("{what}: the manifest is not JSON"))?;
    if v.get("schemaVersion").and_then(Value::as_i64) == Some(1) {
        bail!(
            "{what}: Docker schema 1 manifests are not supported (the image is older than \
             2017); push it again with a current tool"
        );
    }
    let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if mt == MEDIA_INDEX
        || mt == DOCKER_MEDIA_LIST
        || (mt.is_empty() && v.get("manifests").is_some())
    {
        Ok((Kind::Index, v))
    } else if mt == MEDIA_MANIFEST
        || mt == DOCKER_MEDIA_MANIFEST
        || (mt.is_empty() && v.get("config").is_some())
    {
        Ok((Kind::Manifest, v))
    } else {
        bail!("{what}: unsupported manifest media type {mt:?}")
    }
}

/// Whether an image config is for `p` (fields it leaves empty match anything).
pub(crate) fn matches_platform(config: &ImageConfig, p: &Platform) -> bool {
    (config.architecture.is_empty() || config.architecture == p.architecture)
        && (config.os.is_empty() || config.os == p.os)
        && match (&p.variant, &config.variant) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        }
}

fn platform_text(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The manifest of an index for `platform`: same OS and architecture; with a variant asked
/// for, the same variant (arm64's `v8` also matches entries without one); without, an entry
/// without a variant is preferred, else the first.
pub fn select_platform(index: &Value, platform: &Platform, what: &str) -> anyhow::Result<Digest> {
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let field = |e: &Value, k: &str| {
        e.get("platform")
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let candidates: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            field(e, "os").as_deref() == Some(&platform.os)
                && field(e, "architecture").as_deref() == Some(&platform.architecture)
        })
        .collect();
    let variant_ok = |e: &Value| {
        let ev = field(e, "variant");
        match &platform.variant {
            Some(want) => {
                ev.as_deref() == Some(want.as_str())
                    || (ev.is_none() && platform.architecture == "arm64" && want == "v8")
            }
            None => true,
        }
    };
    let chosen = candidates
        .iter()
        .filter(|e| variant_ok(e))
        .min_by_key(|e| field(e, "variant").is_some() as u8);
    let Some(entry) = chosen else {
        let mut have: Vec<String> = entries
            .iter()
            .filter_map(|e| {
                let (os, arch) = (field(e, "os")?, field(e, "architecture")?);
                Some(match field(e, "variant") {
                    Some(v) => format!("{os}/{arch}/{v}"),
                    None => format!("{os}/{arch}"),
                })
            })
            .filter(|p| p != "unknown/unknown")
            .collect();
        have.dedup();
        bail!(
            "{what} has no image for {}; it has {}. Choose one with --platform",
            platform_text(platform),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        );
    };
    let d = entry
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default();
    d.parse()
        .map_err(|e| anyhow::anyhow!("{what}: bad digest {d:?} in the index: {e}"))
}

fn read_blob(store: &Store, d: &Digest) -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    store.open_blob(d)?.read_to_end(&mut b)?;
    Ok(b)
}

fn parse_manifest(bytes: &[u8], what: &str) -> anyhow::Result<(ImageManifest, Digest)> {
    let m: ImageManifest =
        serde_json::from_slice(bytes).with_context(|| format!("{what}: not an image manifest"))?;
    let cd = m.config().digest().to_string().parse()?;
    Ok((m, cd))
}

/// Resolves `name` pinned at `digest` from the store alone: None when a blob is missing.
pub fn local(
    store: &Store,
    name: &ImageName,
    digest: &Digest,
    platform: &Platform,
) -> anyhow::Result<Option<Resolved>> {
    if !store.has_blob(digest) {
        return Ok(None);
    }
    let what = name.pinned(&digest.to_string());
    let bytes = read_blob(store, digest)?;
    let manifest_digest = match kind_of(&bytes, &what)? {
        (Kind::Manifest, _) => *digest,
        (Kind::Index, v) => select_platform(&v, platform, &what)?,
    };
    if !store.has_blob(&manifest_digest) {
        return Ok(None);
    }
    let bytes = read_blob(store, &manifest_digest)?;
    let (manifest, config_digest) = parse_manifest(&bytes, &what)?;
    if !store.has_blob(&config_digest) {
        return Ok(None);
    }
    let config = ImageConfig::from_json(&read_blob(store, &config_digest)?)
        .with_context(|| format!("{what}: config {config_digest} is not an image config"))?;
    Ok(Some(Resolved {
        name: name.clone(),
        digest: *digest,
        manifest_digest,
        manifest,
        config,
    }))
}

impl Registry {
    /// Resolves `name` on its registry (a tag to the digest it points at now) and stores the
    /// index, manifest and config blobs; layers are left to [`Registry::fetch_layers`].
    pub fn resolve(
        &self,
        store: &Store,
        name: &ImageName,
        platform: &Platform,
    ) -> anyhow::Result<Resolved> {
        let conn = self.conn(&name.host)?;
        self.block_on(self.resolve_async(&conn, store, name, platform))
    }

    async fn resolve_async(
        &self,
        conn: &Conn,
        store: &Store,
        name: &ImageName,
        platform: &Platform,
    ) -> anyhow::Result<Resolved> {
        let top = match &name.digest {
            Some(d) => {
                let d: Digest = d.parse()?;
                if store.has_blob(&d) {
                    (read_blob(store, &d)?, d)
                } else {
                    self.fetch_manifest(conn, store, name).await?
                }
            }
            None => self.fetch_manifest(conn, store, name).await?,
        };
        let (bytes, digest) = top;
        let what = name.to_string();
        let (manifest_digest, manifest_bytes) = match kind_of(&bytes, &what)? {
            (Kind::Manifest, _) => (digest, bytes),
            (Kind::Index, v) => {
                let md = select_platform(&v, platform, &what)?;
                let bytes = if store.has_blob(&md) {
                    read_blob(store, &md)?
                } else {
                    self.fetch_manifest(conn, store, &name.at_digest(&md.to_string()))
                        .await?
                        .0
                };
                if !matches!(kind_of(&bytes, &what)?.0, Kind::Manifest) {
                    bail!("{what}: the index entry {md} is not an image manifest");
                }
                (md, bytes)
            }
        };
        let (manifest, config_digest) = parse_manifest(&manifest_bytes, &what)?;
        self.fetch_blob(conn, store, name, manifest.config())
            .await?;
        let config = ImageConfig::from_json(&read_blob(store, &config_digest)?)
            .with_context(|| format!("{what}: config {config_digest} is not an image config"))?;
        if !matches_platform(&config, platform) {
            let have = Platform {
                os: config.os.clone(),
                architecture: config.architecture.clone(),
                variant: config.variant.clone(),
            };
            bail!(
                "{what} is an image for {}, not {}; build with --platform {} or use an image \
                 that has {}",
                platform_text(&have),
                platform_text(platform),
                platform_text(&have),
                platform_text(platform)
            );
        }
        Ok(Resolved {
            name: name.clone(),
            digest,
            manifest_digest,
            manifest,
            config,
        })
    }

    /// GETs a manifest, checks it against the digest asked for, stores it byte-exact.
    pub(crate) async fn fetch_manifest(
        &self,
        conn: &Conn,
        store: &Store,
        name: &ImageName,
    ) -> anyhow::Result<(Vec<u8>, Digest)> {
        let r = name.oci();
        let (bytes, _) = self
            .retry(|| {
                conn.client
                    .pull_manifest_raw(&r, &conn.auth, &MANIFEST_TYPES)
            })
            .await
            .map_err(|e| explain(conn, e, "pulling", name))?;
        let digest = Digest::of_bytes(&bytes);
        if let Some(want) = &name.digest
            && *want != digest.to_string()
        {
            bail!(
                "pulling {name}: the registry sent a manifest whose digest is {digest}; the \
                 registry's copy is damaged: nothing was stored"
            );
        }
        store.put_blob_from_reader(&bytes[..], Some(&digest))?;
        Ok((bytes.to_vec(), digest))
    }

    /// Streams one blob into the store unless it is there; returns whether it downloaded.
    pub(crate) async fn fetch_blob(
        &self,
        conn: &Conn,
        store: &Store,
        name: &ImageName,
        desc: &Descriptor,
    ) -> anyhow::Result<bool> {
        let digest: Digest = desc.digest().to_string().parse()?;
        if store.has_blob(&digest) {
            store.record_blob_source(&digest, &name.repo());
            return Ok(false);
        }
        let od = OciDescriptor {
            media_type: desc.media_type().to_string(),
            digest: digest.to_string(),
            size: desc.size() as i64,
            ..Default::default()
        };
        let r = name.oci();
        let mut sized = self
            .retry(|| conn.client.pull_blob_stream(&r, &od))
            .await
            .map_err(|e| explain(conn, e, &format!("pulling blob {digest} of"), name))?;
        let damaged = |detail: String| {
            anyhow::anyhow!(
                "pulling {name}: blob {digest} from {} is damaged ({detail}); nothing was stored. \
                 The registry's copy does not match the manifest: ask its owner to push the \
                 image again",
                conn.host
            )
        };
        // The writer's temp file goes away if anything below fails: no partial blob is left.
        let mut w = store.blob_writer()?;
        while let Some(chunk) = sized.stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.to_string().contains("Invalid digest") {
                    damaged(e.to_string())
                } else {
                    anyhow::anyhow!("pulling {name}: downloading blob {digest}: {e}")
                }
            })?;
            w.write_all(&chunk)
                .with_context(|| format!("writing blob {digest} to the store"))?;
            if w.size() > desc.size() {
                return Err(damaged(format!(
                    "more than the {} bytes it should have",
                    desc.size()
                )));
            }
        }
        if w.size() != desc.size() {
            return Err(damaged(format!(
                "{} bytes instead of {}",
                w.size(),
                desc.size()
            )));
        }
        match w.finish(Some(&digest)) {
            Ok(_) => {
                store.record_blob_source(&digest, &name.repo());
                Ok(true)
            }
            Err(StoreError::DigestMismatch { actual, .. }) => {
                Err(damaged(format!("its content hashes to {actual}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Downloads the layers of `r` the store lacks, several at a time; returns how many.
    pub fn fetch_layers(&self, store: &Store, r: &Resolved) -> anyhow::Result<usize> {
        let conn = self.conn(&r.name.host)?;
        let conn = &conn;
        self.block_on(async {
            // The manifest may have come from the store: give the client its credentials.
            let oci = r.name.oci();
            conn.client
                .store_auth_if_needed(oci.resolve_registry(), &conn.auth)
                .await;
            let fetched: Vec<bool> = futures_util::stream::iter(r.manifest.layers())
                .map(|l| self.fetch_blob(conn, store, &r.name, l))
                .buffer_unordered(PARALLEL_LAYERS)
                .try_collect()
                .await?;
            Ok(fetched.into_iter().filter(|f| *f).count())
        })
    }

    /// `wbuild pull`: resolve, fetch every missing blob, and name the image in the store by
    /// its tag. Returns the resolution and how many layers were downloaded.
    pub fn pull(
        &self,
        store: &Store,
        name: &ImageName,
        platform: &Platform,
    ) -> anyhow::Result<(Resolved, usize)> {
        let r = self.resolve(store, name, platform)?;
        let n = self.fetch_layers(store, &r)?;
        if let Some(tag_name) = name.store_name() {
            store.set_ref(&tag_name, &r.manifest_digest)?;
        }
        Ok((r, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn platform_selection_is_variant_aware() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {"digest": d('1'), "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": d('2'), "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
                {"digest": d('3'), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"digest": d('4'), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"digest": d('5'), "platform": {"os": "unknown", "architecture": "unknown"}},
            ]
        });
        let pick = |pl| select_platform(&index, &pl, "x").map(|d| d.to_string());
        assert_eq!(pick(p("linux", "amd64", None)).unwrap(), d('1'));
        assert_eq!(pick(p("linux", "arm", Some("v7"))).unwrap(), d('3'));
        assert_eq!(pick(p("linux", "arm", Some("v6"))).unwrap(), d('2'));
        assert_eq!(pick(p("linux", "arm64", Some("v8"))).unwrap(), d('4'));
        assert_eq!(pick(p("linux", "arm64", None)).unwrap(), d('4'));
        let err = pick(p("linux", "s390x", None)).unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(err.contains("linux/arm/v7"), "{err}");
        assert!(!err.contains("unknown"), "{err}");
    }
}
