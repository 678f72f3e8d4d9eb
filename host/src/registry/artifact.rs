//! Frontends in registries: a wasm component travels as an OCI artifact, the layout the wasm
//! tooling of the OCI ecosystem uses (an image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose single layer is the component,
//! `application/wasm`). `wbuild frontends push` publishes one; `# syntax=REGISTRY/REPO:TAG`
//! (or `--frontend` with a reference) pulls it, checked against its digest and pinned by the
//! manifest digest. The blobs live in the store like any other.

use std::io::Read;

use anyhow::{Context, bail};
use oci_spec::image::Descriptor;
use serde_json::{Value, json};

use super::client::Registry;
use super::push::PushStats;
use super::reference::ImageName;
use crate::image::manifest::MEDIA_MANIFEST;
use crate::store::{Digest, Store};

/// Media type of the artifact's config.
pub const MEDIA_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the component layer.
pub const MEDIA_WASM: &str = "application/wasm";

/// A frontend fetched from a registry.
pub struct PulledFrontend {
    /// `NAME@sha256:…` of the artifact manifest.
    pub pinned: String,
    /// The component's bytes (verified against the layer digest on the way into the store).
    pub component: Vec<u8>,
}

fn read_blob(store: &Store, d: &Digest) -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    store.open_blob(d)?.read_to_end(&mut b)?;
    Ok(b)
}

/// The descriptor of the component layer of an artifact manifest.
fn component_layer(manifest: &[u8], what: &str) -> anyhow::Result<Descriptor> {
    let v: Value = serde_json::from_slice(manifest)
        .with_context(|| format!("{what}: the manifest is not JSON"))?;
    let layers = v.get("layers").and_then(Value::as_array);
    let wasm: Vec<&Value> = layers
        .into_iter()
        .flatten()
        .filter(|l| l.get("mediaType").and_then(Value::as_str) == Some(MEDIA_WASM))
        .collect();
    match wasm.as_slice() {
        [one] => serde_json::from_value((*one).clone())
            .with_context(|| format!("{what}: the {MEDIA_WASM} layer descriptor is malformed")),
        [] => bail!(
            "{what} is not a frontend: its manifest has no {MEDIA_WASM} layer (is it a container \
             image? `# syntax=` takes a wasm component pushed with `wbuild frontends push`)"
        ),
        _ => bail!("{what}: the manifest has several {MEDIA_WASM} layers; expected one"),
    }
}

impl Registry {
    /// Fetch the frontend `name` (a tag is resolved on the registry; a digest the store already
    /// has is not fetched again).
    pub fn pull_frontend(&self, store: &Store, name: &ImageName) -> anyhow::Result<PulledFrontend> {
        let what = name.to_string();
        if let Some(d) = &name.digest {
            let d: Digest = d.parse()?;
            if store.has_blob(&d) {
                let layer = component_layer(&read_blob(store, &d)?, &what)?;
                let ld: Digest = layer.digest().to_string().parse()?;
                if store.has_blob(&ld) {
                    return Ok(PulledFrontend {
                        pinned: name.pinned(&d.to_string()),
                        component: read_blob(store, &ld)?,
                    });
                }
            }
        }
        let conn = self.conn(&name.host)?;
        self.block_on(async {
            let (bytes, digest) = self.fetch_manifest(&conn, store, name).await?;
            let layer = component_layer(&bytes, &what)?;
            self.fetch_blob(&conn, store, name, &layer).await?;
            let ld: Digest = layer.digest().to_string().parse()?;
            Ok(PulledFrontend {
                pinned: name.pinned(&digest.to_string()),
                component: read_blob(store, &ld)?,
            })
        })
    }

    /// Publish `component` as the frontend `name`; returns the manifest digest.
    pub fn push_frontend(
        &self,
        store: &Store,
        component: &[u8],
        name: &ImageName,
    ) -> anyhow::Result<(Digest, PushStats)> {
        let put = |bytes: &[u8]| store.put_blob_from_reader(&mut &bytes[..], None);
        let (layer, layer_size) = put(component)?;
        let config = b"{}";
        let (config_digest, config_size) = put(config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "artifactType": MEDIA_WASM,
            "config": {
                "mediaType": MEDIA_WASM_CONFIG,
                "digest": config_digest.to_string(),
                "size": config_size,
            },
            "layers": [{
                "mediaType": MEDIA_WASM,
                "digest": layer.to_string(),
                "size": layer_size,
            }],
        });
        let (digest, _) = put(&serde_json::to_vec(&manifest)?)?;
        let stats = self.push(store, &digest, name)?;
        Ok((digest, stats))
    }
}
