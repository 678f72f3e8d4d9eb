//! A multi-platform build (`--platform linux/amd64,linux/arm64`), or one with provenance: one
//! [`Builder`] per platform, each over its own translation, all in this one build so they share
//! the store's step cache — a step whose key is the same for every platform (a
//! `FROM --platform=$BUILDPLATFORM` stage that does not read the target) runs once: the other
//! platform waits on the step's lock and takes the cached result. The platforms build at the
//! same time, their stages drawing on one pool of `--jobs` slots ([`Slots`]); progress names
//! the platform of each step.
//!
//! The result is an OCI image index ([`crate::image::index`]): a manifest per platform and,
//! with provenance, an attestation manifest per platform ([`crate::image::provenance`]). The
//! index is what `-t` names, `--push` pushes and `-o type=oci` writes; `-o type=local` writes
//! one directory per platform (`linux_amd64/`), `-o type=tar` one tar with those directories,
//! as buildx.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context as _, bail};

use super::options::{BuildOptions, BuildResult, Output, PlatformResult};
use super::{Builder, StageState};
use crate::image::index::{self, Blob, PlatformImage};
use crate::image::manifest::MEDIA_INDEX;
use crate::image::provenance::{self, Material, Mode};
use crate::ir::{Graph, KeyValue, Platform, platform_text};
use crate::progress::Progress;
use crate::registry::{Images, Registry};
use crate::store::{Digest, Store};

/// A pool of stage slots the platforms' schedulers share: at most `--jobs` stages of the whole
/// build run at once.
pub(crate) struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A taken slot, given back when dropped.
pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub(crate) fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap();
        while *free == 0 {
            free = self.freed.wait(free).unwrap();
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap() += 1;
        self.0.freed.notify_one();
    }
}

/// One platform of the build: its translation and the images its frontend call resolved.
pub(crate) struct PlatformBuild<'g> {
    /// The target platform.
    pub platform: Platform,
    /// The frontend's graph for it.
    pub graph: &'g Graph,
    /// Its image resolutions (the base images the provenance names).
    pub images: Arc<Images>,
}

/// What the provenance says about the build as a whole.
pub(crate) struct ProvenanceRequest {
    pub mode: Mode,
    pub file_digest: String,
    /// The frontend component's label and digest.
    pub frontend: (String, String),
    pub target: Option<String>,
    pub build_args: Vec<KeyValue>,
}

/// `linux/arm64/v8` → `linux_arm64_v8`: a platform's directory under `-o type=local`.
fn platform_dir(p: &Platform) -> String {
    platform_text(p).replace('/', "_")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The base images `images` resolved, for the provenance.
fn materials(images: &Images) -> Vec<Material> {
    images
        .resolved()
        .into_iter()
        .map(|(_, platform, r)| {
            let n = &r.name;
            let reference = match (&n.tag, &n.digest) {
                (Some(t), _) => format!("{}:{t}", n.repo()),
                (None, Some(d)) => format!("{}@{d}", n.repo()),
                (None, None) => n.repo(),
            };
            Material {
                reference,
                platform: platform.trim_end_matches('/').to_string(),
                digest: r.digest.to_string(),
            }
        })
        .collect()
}

/// The cache index entries of each `--cache-to`, in order.
type CacheSteps = Vec<Vec<(Digest, Vec<u8>)>>;

/// One platform's outcome.
struct Built<'a> {
    builder: Builder<'a>,
    target: StageState,
    steps: CacheSteps,
    result: BuildResult,
}

/// Builds every platform of `builds` with `opts` (`opts.platform` is ignored), assembles the
/// index (with `provenance`, an attestation per platform), names it `opts.tags` and writes it
/// where `opts.outputs` say.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_platforms(
    store: &Store,
    context_dir: &Path,
    opts: BuildOptions,
    progress: Arc<Progress>,
    registry: Arc<Registry>,
    builds: Vec<PlatformBuild<'_>>,
    provenance: Option<ProvenanceRequest>,
) -> anyhow::Result<BuildResult> {
    let _gc = store.lock_shared(Store::GC_LOCK)?;
    let started = opts.source_date_epoch.unwrap_or_else(now);
    let many = builds.len() > 1;
    // Every platform's RUN steps can run here, checked before any step of any platform runs.
    for b in &builds {
        crate::exec::binfmt::require(b.graph, &b.platform, &opts.file_name)?;
    }
    let slots = Arc::new(Slots::new(opts.jobs));
    let mut builders: Vec<Builder<'_>> = Vec::new();
    for b in &builds {
        let mut o = opts.clone();
        o.platform = b.platform.clone();
        o.outputs.clear();
        let mut builder = Builder::new(store, context_dir, o, progress.clone())?
            .with_registry(b.images.clone(), registry.clone());
        if many {
            builder.label_prefix = format!("{} ", platform_text(&b.platform));
        }
        builder.slots = Some(slots.clone());
        builder.layer_compression = super::layer_compression(&opts.outputs, opts.compression);
        // The context's files are hashed once for all platforms.
        if let Some(first) = builders.first() {
            builder.memo = Arc::clone(&first.memo);
        }
        builders.push(builder);
    }
    builders[0].import_caches()?;
    let outputs = &opts.outputs;
    let outcomes: Vec<anyhow::Result<(StageState, CacheSteps, BuildResult)>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = builders
                .iter()
                .zip(&builds)
                .map(|(builder, b)| {
                    scope.spawn(move || {
                        let (results, target) = builder.run_graph(b.graph)?;
                        let result = builder.commit_image(&target, &[], outputs)?;
                        let steps = builder.cache_steps(&results, &target);
                        Ok((target, steps, result))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| bail!("a platform's build panicked"))
                })
                .collect()
        });
    let mut built = Vec::new();
    for ((outcome, builder), b) in outcomes.into_iter().zip(builders).zip(&builds) {
        let (target, steps, result) =
            outcome.with_context(|| format!("building for {}", platform_text(&b.platform)))?;
        built.push(Built {
            builder,
            target,
            steps,
            result,
        });
    }
    let finished = opts.source_date_epoch.unwrap_or_else(now);

    // The index: each platform's manifest, and its attestation.
    let names = opts
        .tags
        .iter()
        .map(|t| crate::image::normalize(t).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut images = Vec::new();
    let mut platforms = Vec::new();
    for (x, b) in built.iter().zip(&builds) {
        let manifest = Blob {
            digest: x.result.manifest_digest.to_string(),
            size: x.result.manifest_size,
        };
        let attestation = match &provenance {
            None => None,
            Some(p) => {
                let statement = provenance::statement(&provenance::Inputs {
                    mode: p.mode,
                    manifest_digest: &manifest.digest,
                    platform: &b.platform,
                    names: &names,
                    file_name: &opts.file_name,
                    file_digest: &p.file_digest,
                    frontend: (&p.frontend.0, &p.frontend.1),
                    target: p.target.as_deref(),
                    build_args: &p.build_args,
                    materials: &materials(&b.images),
                    build_platform: &crate::ir::host_platform(),
                    times: (started, finished),
                });
                let a = provenance::attestation(statement);
                for blob in [&a.statement, &a.config, &a.manifest] {
                    store.put_blob_from_reader(&mut blob.as_slice(), None)?;
                }
                Some(Blob::of(&a.manifest))
            }
        };
        platforms.push(PlatformResult {
            platform: platform_text(&b.platform),
            manifest_digest: x.result.manifest_digest,
            config_digest: x.result.config_digest.clone(),
            attestation: attestation.as_ref().map(|a| a.digest.parse()).transpose()?,
            ran: x.result.ran,
            cached: x.result.cached,
        });
        images.push(PlatformImage {
            platform: b.platform.clone(),
            manifest,
            attestation,
        });
    }
    let index_bytes = index::build(&images, &opts.index_annotations);
    let (index_digest, index_size) =
        store.put_blob_from_reader(&mut index_bytes.as_slice(), None)?;
    for n in &names {
        store.set_ref(n, &index_digest)?;
    }
    // The image ID: of one platform (an index only for its provenance) its config, as
    // BuildKit reports it; of several, the index.
    let config_digest = match platforms.as_slice() {
        [one] => one.config_digest.clone(),
        _ => index_digest.to_string(),
    };
    let result = BuildResult {
        manifest_digest: index_digest,
        config_digest,
        manifest_size: index_size,
        media_type: MEDIA_INDEX,
        ran: platforms.iter().map(|p| p.ran).sum(),
        cached: platforms.iter().map(|p| p.cached).sum(),
        platforms,
    };

    for out in &opts.outputs {
        match out {
            // The index, with every platform's image.
            Output::Registry(_) | Output::Oci(_) => {
                built[0].builder.export(out, &built[0].target, &result)?
            }
            Output::Local(dir) if many => {
                for (x, b) in built.iter().zip(&builds) {
                    let sub = Output::Local(dir.join(platform_dir(&b.platform)));
                    x.builder.export(&sub, &x.target, &x.result)?;
                }
            }
            Output::Tar(dest) if many => write_tar(&built, &builds, dest, &opts)?,
            Output::Docker(_) | Output::Load if many => bail!(
                "{}: a multi-platform result has no single image for it; choose one platform \
                 with --platform, or use -o type=oci",
                if matches!(out, Output::Load) {
                    "--load"
                } else {
                    "-o type=docker"
                }
            ),
            // One platform (with provenance): its image.
            _ => built[0]
                .builder
                .export(out, &built[0].target, &built[0].result)?,
        }
    }
    // --cache-to: every platform's steps.
    let mut steps: CacheSteps = vec![Vec::new(); opts.cache_to.len()];
    for x in &built {
        for (all, mine) in steps.iter_mut().zip(&x.steps) {
            all.extend(mine.iter().cloned());
        }
    }
    built[0].builder.export_caches(steps)?;
    Ok(result)
}

/// `-o type=tar` of several platforms: one tar, each platform's filesystem under its
/// directory (`linux_amd64/`), as buildx; `-` is standard output.
fn write_tar(
    built: &[Built<'_>],
    builds: &[PlatformBuild<'_>],
    dest: &Path,
    opts: &BuildOptions,
) -> anyhow::Result<()> {
    let mut roots = Vec::new();
    for (x, b) in built.iter().zip(builds) {
        let root = x.builder.rootfs(&mut x.target.clone())?;
        roots.push((root, platform_dir(&b.platform)));
    }
    let trees: Vec<(&Path, &str)> = roots
        .iter()
        .map(|(r, d)| (r.as_path(), d.as_str()))
        .collect();
    let diff = crate::snapshot::DiffOptions {
        source_date_epoch: opts.source_date_epoch,
        ..Default::default()
    };
    if dest == Path::new("-") {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        crate::snapshot::diff_trees(&trees, &mut w, &diff)?;
        return Ok(std::io::Write::flush(&mut w)?);
    }
    crate::sys::write_atomic(dest, |f| {
        let mut w = crate::sys::DirectWriter::new(f);
        crate::snapshot::diff_trees(&trees, &mut w, &diff).map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut w)
    })
    .with_context(|| format!("writing {}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn slots_bound_the_stages_of_every_platform_together() {
        let slots = Slots::new(2);
        let (running, max) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| {
                    let _slot = slots.take();
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(max.into_inner(), 2);
        assert_eq!(*slots.free.lock().unwrap(), 2, "every slot given back");
    }

    #[test]
    fn platform_directories_are_named_as_buildx() {
        let p = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(platform_dir(&p), "linux_arm64_v8");
    }
}
