//! Where a build's images come from: [`Images`] resolves a reference for a platform from the
//! store (a name it holds, or a digest whose blobs it has) or, failing that (or always, with
//! `--pull`), from its registry; remembers each resolution for the rest of the process so the
//! frontend's `resolve-image-config`, the plan and the build all see the same digest; and
//! answers the frontends' `resolve-image-config`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::client::Registry;
use super::pull::{Resolved, local};
use super::reference::ImageName;
use crate::catalog;
use crate::frontend::ImageResolver;
use crate::ir::{ImageConfig as FrontendImageConfig, KeyValue, Platform};
use crate::store::Store;

/// Resolves image references for one command.
pub struct Images {
    store: Store,
    /// None: the store only (`wbuild plan` without `--pull`).
    registry: Option<Arc<Registry>>,
    /// `--pull`: resolve tags on the registry even when the store has the name.
    always_pull: bool,
    memo: Mutex<BTreeMap<(String, String), Resolved>>,
    /// `--build-context NAME=…`: the reference used for NAME.
    aliases: BTreeMap<String, String>,
}

fn platform_key(p: &Platform) -> String {
    format!(
        "{}/{}/{}",
        p.os,
        p.architecture,
        p.variant.as_deref().unwrap_or("")
    )
}

impl Images {
    pub fn new(store: Store, registry: Option<Arc<Registry>>, always_pull: bool) -> Images {
        Images {
            store,
            registry,
            always_pull,
            memo: Mutex::new(BTreeMap::new()),
            aliases: BTreeMap::new(),
        }
    }

    /// Resolves each key (a named build context) as its value instead.
    pub fn with_aliases(mut self, aliases: BTreeMap<String, String>) -> Images {
        self.aliases = aliases;
        self
    }

    /// Images from the store only.
    pub fn offline(store: Store) -> Images {
        Images::new(store, None, false)
    }

    /// The reference → pinned reference of everything resolved so far, sorted.
    pub fn resolutions(&self) -> BTreeMap<String, String> {
        self.memo
            .lock()
            .unwrap()
            .iter()
            .map(|((r, _), v)| (r.clone(), v.pinned()))
            .collect()
    }

    /// Every resolution so far: (reference as written, platform as `os/arch/variant`, what it
    /// resolved to), sorted — the base images a build's provenance names.
    pub fn resolved(&self) -> Vec<(String, String, Resolved)> {
        self.memo
            .lock()
            .unwrap()
            .iter()
            .map(|((r, p), v)| (r.clone(), p.clone(), v.clone()))
            .collect()
    }

    /// Resolves `reference` with its manifest and config in the store (layers maybe not).
    /// `Ok(None)`: not in the store and there is no registry to ask.
    pub fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> anyhow::Result<Option<Resolved>> {
        let reference = self
            .aliases
            .get(reference)
            .map_or(reference, String::as_str);
        let key = (reference.to_string(), platform_key(platform));
        if let Some(r) = self.memo.lock().unwrap().get(&key) {
            return Ok(Some(r.clone()));
        }
        let name = ImageName::parse(reference)?;
        let found = match self.in_store(&name, platform)? {
            Some(r) => Some(r),
            None => match &self.registry {
                Some(reg) => Some(
                    reg.resolve(&self.store, &name, platform)
                        .map_err(|e| self.other_platform_hint(e, &name))?,
                ),
                None => None,
            },
        };
        if let Some(r) = &found {
            self.memo.lock().unwrap().insert(key, r.clone());
        }
        Ok(found)
    }

    /// When the store has the name for another platform, say so: the user may have meant it.
    fn other_platform_hint(&self, e: anyhow::Error, name: &ImageName) -> anyhow::Error {
        match catalog::lookup(&self.store, &name.to_string()) {
            Ok(Some(img)) if !img.config.architecture.is_empty() => {
                let mut p = format!("{}/{}", img.config.os, img.config.architecture);
                if let Some(v) = &img.config.variant {
                    p = format!("{p}/{v}");
                }
                e.context(format!(
                    "the store's {} is for {p}, so it was looked up on its registry; to build \
                     on the store's image, pass --platform {p}",
                    name
                ))
            }
            _ => e,
        }
    }

    fn in_store(&self, name: &ImageName, platform: &Platform) -> anyhow::Result<Option<Resolved>> {
        if let Some(d) = &name.digest {
            // A digest names content: the store's copy is as good as the registry's.
            return local(&self.store, name, &d.parse()?, platform);
        }
        if self.always_pull && self.registry.is_some() {
            return Ok(None);
        }
        let Some(img) = catalog::lookup(&self.store, &name.to_string())? else {
            return Ok(None);
        };
        // A name of an index (a multi-platform build) gives the platform's entry.
        let Some((manifest_digest, manifest, config)) = img.for_platform(platform) else {
            return Ok(None);
        };
        Ok(Some(Resolved {
            name: name.clone(),
            digest: img.digest,
            manifest_digest,
            manifest,
            config,
        }))
    }

    /// Resolves `reference` and makes sure every layer is in the store (pulling what is
    /// missing); a tag pulled from a registry is named in the store, as `wbuild pull` does.
    pub fn image(&self, reference: &str, platform: &Platform) -> anyhow::Result<Option<Resolved>> {
        let Some(r) = self.resolve(reference, platform)? else {
            return Ok(None);
        };
        if !r.complete(&self.store) {
            let Some(reg) = &self.registry else {
                anyhow::bail!(
                    "{}: layers of the image are missing from the store; pull it again with \
                     `wbuild pull {}`",
                    r.name,
                    r.pinned()
                );
            };
            reg.fetch_layers(&self.store, &r)?;
        }
        // A tag resolved on the registry names what it points at now, as `wbuild pull` does.
        if let Some(n) = r.name.store_name()
            && r.name.digest.is_none()
            && !matches!(self.store.get_ref(&n)?, Some(d) if d == r.manifest_digest || d == r.digest)
        {
            self.store.set_ref(&n, &r.manifest_digest)?;
        }
        Ok(Some(r))
    }
}

impl ImageResolver for Images {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<FrontendImageConfig, String> {
        let r = match Images::resolve(self, reference, platform) {
            Ok(Some(r)) => r,
            Ok(None) => return crate::frontend::EmptyImages.resolve(reference, platform),
            Err(e) => return Err(format!("{e:#}")),
        };
        let c = &r.config.config;
        Ok(FrontendImageConfig {
            digest: Some(r.digest.to_string()),
            env: r
                .config
                .env_pairs()
                .map(|(key, value)| KeyValue {
                    key: key.into(),
                    value: value.into(),
                })
                .collect(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            shell: c.shell.clone(),
            onbuild: c.on_build.clone(),
        })
    }
}
