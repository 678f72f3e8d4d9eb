//! Pushing: every blob of an image (or index) the registry lacks is uploaded by streaming it
//! from the store (chunked; never read whole into memory); blobs the registry already has are
//! skipped after a HEAD, and blobs known to come from another repository of the same registry
//! are cross-repository mounted instead of uploaded (the store records, on pull, which
//! repository each blob came from). Manifests are pushed byte-exact, so the digest in the
//! registry is the digest in the store.

use std::io::Read;

use anyhow::Context;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::errors::OciDistributionError;
use serde_json::Value;

use super::client::{Conn, Registry, explain};
use super::reference::ImageName;
use crate::image::manifest::MEDIA_MANIFEST;
use crate::store::{Digest, Store};

/// Blobs uploaded at the same time.
const PARALLEL_UPLOADS: usize = 3;
/// Bytes read from the store per upload chunk.
const CHUNK: usize = 4 << 20;

/// What a push did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PushStats {
    pub uploaded: usize,
    pub mounted: usize,
    pub existing: usize,
}

fn read_blob(store: &Store, d: &Digest) -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    store.open_blob(d)?.read_to_end(&mut b)?;
    Ok(b)
}

/// The blob a store file streams as, in chunks, for an upload.
fn blob_stream(
    store: &Store,
    d: &Digest,
) -> anyhow::Result<
    impl futures_util::Stream<Item = Result<bytes::Bytes, OciDistributionError>> + Send + 'static,
> {
    let file = store.stream_blob(d)?;
    Ok(futures_util::stream::unfold(
        Some(file),
        |state| async move {
            let mut f = state?;
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match f.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Some((Err(OciDistributionError::IoError(e)), None)),
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((Ok(bytes::Bytes::from(buf)), Some(f)))
        },
    ))
}

impl Registry {
    /// Pushes the manifest or index `digest` from the store, with everything it refers to,
    /// and tags it as `name` (its tag, or its digest for a digest-only name).
    pub fn push(
        &self,
        store: &Store,
        digest: &Digest,
        name: &ImageName,
    ) -> anyhow::Result<PushStats> {
        let conn = self.conn(&name.host)?;
        self.block_on(async {
            let r = name.oci();
            conn.client
                .store_auth_if_needed(r.resolve_registry(), &conn.auth)
                .await;
            let mut stats = PushStats::default();
            self.push_manifest(&conn, store, digest, name, true, &mut stats)
                .await?;
            Ok(stats)
        })
    }

    async fn push_manifest(
        &self,
        conn: &Conn,
        store: &Store,
        digest: &Digest,
        name: &ImageName,
        top: bool,
        stats: &mut PushStats,
    ) -> anyhow::Result<()> {
        let bytes = read_blob(store, digest)
            .with_context(|| format!("pushing {name}: manifest {digest} is not in the store"))?;
        let v: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("pushing {name}: {digest} is not a manifest"))?;
        let media_type = v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(MEDIA_MANIFEST)
            .to_string();
        let digests = |key: &str| -> anyhow::Result<Vec<Digest>> {
            let mut out = Vec::new();
            for d in v.get(key).and_then(Value::as_array).into_iter().flatten() {
                let s = d.get("digest").and_then(Value::as_str).unwrap_or("");
                out.push(
                    s.parse()
                        .with_context(|| format!("bad digest {s:?} in {digest}"))?,
                );
            }
            Ok(out)
        };
        for child in digests("manifests")? {
            Box::pin(self.push_manifest(conn, store, &child, name, false, stats)).await?;
        }
        let mut blobs = digests("layers")?;
        if let Some(c) = v
            .get("config")
            .and_then(|c| c.get("digest"))
            .and_then(Value::as_str)
        {
            blobs.push(c.parse()?);
        }
        blobs.dedup();
        let results: Vec<Outcome> = futures_util::stream::iter(blobs)
            .map(|b| async move { self.push_blob(conn, store, &b, name).await })
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect()
            .await?;
        for r in results {
            match r {
                Outcome::Uploaded => stats.uploaded += 1,
                Outcome::Mounted => stats.mounted += 1,
                Outcome::Existing => stats.existing += 1,
            }
        }
        let target = if top && name.digest.is_none() {
            name.clone()
        } else {
            name.at_digest(&digest.to_string())
        };
        let content_type = reqwest::header::HeaderValue::from_str(&media_type)
            .with_context(|| format!("pushing {name}: bad media type {media_type:?}"))?;
        let r = target.oci();
        self.retry(|| {
            conn.client
                .push_manifest_raw(&r, bytes.clone(), content_type.clone())
        })
        .await
        .map_err(|e| explain(conn, e, "pushing", name))?;
        Ok(())
    }

    async fn push_blob(
        &self,
        conn: &Conn,
        store: &Store,
        d: &Digest,
        name: &ImageName,
    ) -> anyhow::Result<Outcome> {
        let r = name.oci();
        let ds = d.to_string();
        let exists = self
            .retry(|| conn.client.blob_exists(&r, &ds))
            .await
            .map_err(|e| explain(conn, e, "pushing", name))?;
        if exists {
            return Ok(Outcome::Existing);
        }
        for src in store.blob_sources(d) {
            let Some(repo) = src.strip_prefix(&format!("{}/", name.host)) else {
                continue;
            };
            if repo == name.repository {
                continue;
            }
            let from =
                oci_client::Reference::with_digest(name.host.clone(), repo.to_string(), ds.clone());
            if conn.client.mount_blob(&r, &from, &ds).await.is_ok()
                && conn.client.blob_exists(&r, &ds).await.unwrap_or(false)
            {
                return Ok(Outcome::Mounted);
            }
        }
        let size = store.blob_size(d)?;
        self.retry(|| async {
            let stream = blob_stream(store, d)
                .map_err(|e| OciDistributionError::GenericError(Some(format!("{e:#}"))))?;
            conn.client
                .push_blob_stream(&r, stream, &ds, Some(size))
                .await
        })
        .await
        .map_err(|e| explain(conn, e, &format!("pushing blob {d} of"), name))?;
        store.record_blob_source(d, &name.repo());
        Ok(Outcome::Uploaded)
    }
}

enum Outcome {
    Uploaded,
    Mounted,
    Existing,
}
