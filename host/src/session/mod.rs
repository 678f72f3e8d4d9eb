//! The library's entry point: one build (or plan) from a build file to an image, the whole
//! pipeline in order — select and load the frontend, translate the build file into the IR,
//! validate it, then build it and export the result — with the store's housekeeping around it
//! (the sweep of what killed builds left, the GC lock a build holds from its first pulled blob).
//!
//! ```text
//! Session::open ─▶ prepare(Request) ─▶ Prepared { planned: Planned } ─▶ build(BuildOptions)
//!                  (sweep, GC lock,      (translation, warnings)          (Builder: solve,
//!                   frontend, IR check)                                    exec, export)
//! ```
//! The CLI parses arguments into a [`Request`] and [`BuildOptions`], calls these and prints;
//! benchmarks and tests call them the same way.

mod platforms;
mod select;

pub use platforms::build_platforms;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::builder::{BuildOptions, BuildResult, Builder};
use crate::frontend::{CallContext, Diagnostic, Input, Limits, Runtime, Translation};
use crate::graph::entitlements;
pub use crate::graph::entitlements::Entitlements;
use crate::ir::{KeyValue, Platform, host_platform};
use crate::progress::Progress;
use crate::registry::{ImageName, Images, Registry};
use crate::store::{LockGuard, Store};

/// The build file: its path (for messages and `# syntax=` paths) and text.
#[derive(Debug, Clone)]
pub struct BuildFile {
    /// Where it was read from (`-` for stdin).
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// What to translate: the frontend's inputs.
#[derive(Debug, Clone)]
pub struct Request {
    /// `--frontend`: a `.wasm` file, an embedded frontend's name or a registry reference; None
    /// lets the build file's `# syntax=` line (or the default Dockerfile frontend) decide.
    pub frontend: Option<String>,
    /// The build file.
    pub file: BuildFile,
    /// The build context directory.
    pub context: PathBuf,
    /// `--build-arg`s, in order (a later one of the same name wins).
    pub build_args: Vec<KeyValue>,
    /// `--target`: the stage to build (None: the last).
    pub target: Option<String>,
    /// The target platform.
    pub platform: Platform,
    /// `--pull`: resolve every base image on its registry even when the store has it.
    pub pull: bool,
    /// `--network`: the network of every RUN whose build file leaves it at `default`.
    pub network: crate::ir::Network,
    /// `--allow`: the dangerous powers the user granted (host network, privileged RUN).
    pub allow: Entitlements,
    /// `--build-context NAME=…`: what `FROM NAME` and `COPY --from=NAME` take instead of the
    /// image NAME.
    pub build_contexts: Vec<(String, crate::image::named::NamedContext)>,
}

/// A frontend's translation of a build file into a validated stage graph.
pub struct Planned {
    /// The build file's name, for messages.
    pub file_name: String,
    /// The build file's text, for rendering diagnostics.
    pub source: String,
    /// The files the frontend read from the context (path, text): included fragments whose
    /// lines the warnings may point at.
    pub files_read: Vec<(String, String)>,
    /// The frontend, as `label (digest)`.
    pub frontend: String,
    /// The frontend component's label and digest, apart.
    pub frontend_component: (String, String),
    /// The graph and the frontend's warnings.
    pub translation: Translation,
}

/// The frontend refused the build file: its diagnostics, to render against `text`.
#[derive(Debug, thiserror::Error)]
#[error("the build file has {} error(s)", diagnostics.len())]
pub struct Rejected {
    /// What the frontend reported, with file:line:column.
    pub diagnostics: Vec<Diagnostic>,
    /// The build file's text.
    pub text: String,
    /// The files the frontend read from the context (path, text), for diagnostics in them.
    pub files_read: Vec<(String, String)>,
}

/// A store, a registry client and the compiled-frontend cache: what builds and plans share.
pub struct Session {
    store: Store,
    registry: Arc<Registry>,
}

impl Session {
    /// Opens (or creates) the store at `root`; registries are reached through `registry`.
    pub fn open(root: &Path, registry: Registry) -> anyhow::Result<Session> {
        Ok(Session {
            store: Store::open(root)?,
            registry: Arc::new(registry),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The registry client.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The frontend runtime, with its compiled components cached in the store.
    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        Runtime::new(Some(self.store.frontend_cache_dir()), Limits::default())
    }

    /// Translates without building: the graph, and every image reference the frontend
    /// resolved, pinned by digest. Registries are asked only with `req.pull`.
    pub fn plan(
        &self,
        req: &Request,
    ) -> anyhow::Result<(Planned, std::collections::BTreeMap<String, String>)> {
        let aliases =
            crate::image::named::prepare_all(&self.store, &req.build_contexts, &req.platform)?;
        let images = Arc::new(
            Images::new(
                self.store.clone(),
                req.pull.then(|| self.registry.clone()),
                req.pull,
            )
            .with_aliases(aliases),
        );
        let mut planned = self.translate(req, images.clone())?;
        entitlements::apply_default_network(&mut planned.translation.graph, req.network);
        Ok((planned, images.resolutions()))
    }

    /// Everything before the first step: the sweep of dead builds' leftovers (while no other
    /// wbuild uses the store), the GC lock this build holds until it ends, and the translation.
    pub fn prepare(&self, req: &Request) -> anyhow::Result<Prepared<'_>> {
        let mut warnings = Vec::new();
        match crate::check::sweep_if_idle(&self.store) {
            Ok((_, errors)) => {
                for e in errors {
                    warnings.push(format!("could not remove a leftover of a dead build: {e}"));
                }
            }
            Err(e) => warnings.push(format!(
                "could not look for leftovers of dead builds: {e:#}"
            )),
        }
        // Held from the first blob the frontend's image lookups store, so a prune cannot take
        // them.
        let gc = self.store.lock_shared(Store::GC_LOCK)?;
        let aliases =
            crate::image::named::prepare_all(&self.store, &req.build_contexts, &req.platform)?;
        let images = Arc::new(
            Images::new(self.store.clone(), Some(self.registry.clone()), req.pull)
                .with_aliases(aliases),
        );
        let mut planned = self.translate(req, images.clone())?;
        // Dangerous powers are refused before anything runs, with the RUN that asked.
        let refused = entitlements::refused(
            &planned.translation.graph,
            &planned.file_name,
            req.network,
            req.allow,
        );
        if !refused.is_empty() {
            return Err(Rejected {
                diagnostics: refused,
                text: planned.source.clone(),
                files_read: planned.files_read.clone(),
            }
            .into());
        }
        entitlements::apply_default_network(&mut planned.translation.graph, req.network);
        if entitlements::needs_user_network(&planned.translation.graph) {
            crate::exec::netns::require_helper()?;
        }
        Ok(Prepared {
            session: self,
            _gc: gc,
            images,
            context: req.context.clone(),
            platform: req.platform.clone(),
            warnings,
            planned,
        })
    }

    /// Select, load and call the frontend, then validate its graph.
    fn translate(&self, req: &Request, images: Arc<Images>) -> anyhow::Result<Planned> {
        let path = &req.file.path;
        let source = &req.file.text;
        let rt = self.runtime()?;
        let choice = select::choose(req.frontend.as_deref(), path, source)?;
        let fe = match &choice {
            select::Choice::Embedded(e) => rt.load_bytes(e.name, e.bytes)?,
            select::Choice::File(p) => rt.load_file(p)?,
            select::Choice::Registry { reference, line } => {
                let whence = match line {
                    Some(l) => format!("{}:{l}: `# syntax={reference}`", path.display()),
                    None => format!("--frontend {reference}"),
                };
                let name = ImageName::parse(reference).with_context(|| whence.clone())?;
                let pulled = self
                    .registry
                    .pull_frontend(&self.store, &name)
                    .with_context(|| format!("{whence}: getting the frontend"))?;
                rt.load_bytes(&pulled.pinned, &pulled.component)
                    .with_context(|| format!("{whence}: loading {}", pulled.pinned))?
            }
        };
        let file_name = path.display().to_string();
        let input = Input {
            file_name: file_name.clone(),
            context_path: crate::frontend::context_path(path, &req.context),
            source: source.clone(),
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            target_platform: req.platform.clone(),
            build_platform: host_platform(),
        };
        let cx = CallContext {
            images,
            context_dir: Some(req.context.clone()),
            ..Default::default()
        };
        let translation = match rt.translate(&fe, &input, &cx)? {
            Ok(t) => t,
            Err(diagnostics) => {
                return Err(Rejected {
                    diagnostics,
                    text: source.clone(),
                    files_read: cx.files_read.lock().unwrap().clone(),
                }
                .into());
            }
        };
        crate::graph::validate(&translation.graph)
            .with_context(|| format!("frontend {} returned an invalid stage graph", fe.label))?;
        Ok(Planned {
            file_name,
            source: source.clone(),
            files_read: cx.files_read.lock().unwrap().clone(),
            frontend: format!("{} ({})", fe.label, fe.digest),
            frontend_component: (fe.label.clone(), fe.digest.to_string()),
            translation,
        })
    }
}

/// A translated build holding the store's GC lock, ready to run.
pub struct Prepared<'s> {
    session: &'s Session,
    _gc: LockGuard,
    images: Arc<Images>,
    context: PathBuf,
    /// The target platform it was translated for.
    platform: Platform,
    /// Problems of the store's housekeeping that did not stop the build.
    pub warnings: Vec<String>,
    /// The translation.
    pub planned: Planned,
}

/// Files a build writes about its result besides the image (`--iidfile`, `--metadata-file`).
#[derive(Debug, Clone, Default)]
pub struct ResultFiles {
    /// Gets the image ID (the config digest).
    pub iidfile: Option<PathBuf>,
    /// Gets the result's digests, names and step counts as JSON.
    pub metadata_file: Option<PathBuf>,
}

impl Prepared<'_> {
    /// Builds the translated graph's target with `opts`, names and exports the result, then
    /// writes `files`. `opts.file_name` is set from the translation.
    pub fn build(
        self,
        mut opts: BuildOptions,
        files: &ResultFiles,
        progress: Arc<Progress>,
    ) -> anyhow::Result<BuildResult> {
        opts.file_name = self.planned.file_name.clone();
        opts.limits.check_available()?;
        let tags = opts.tags.clone();
        let builder = Builder::new(&self.session.store, &self.context, opts, progress)?
            .with_registry(self.images.clone(), self.session.registry.clone());
        let result = builder.build(&self.planned.translation.graph)?;
        drop(builder);
        write_result_files(files, &result, &tags)?;
        Ok(result)
    }
}

fn write_result_files(
    files: &ResultFiles,
    result: &BuildResult,
    tags: &[String],
) -> anyhow::Result<()> {
    if let Some(f) = &files.iidfile {
        crate::sys::write_atomic(f, |w| {
            std::io::Write::write_all(w, result.config_digest.as_bytes())
        })
        .with_context(|| format!("writing --iidfile {}", f.display()))?;
    }
    if let Some(f) = &files.metadata_file {
        let names = tags
            .iter()
            .map(|t| crate::image::normalize(t).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let meta = serde_json::json!({
            "containerimage.digest": result.manifest_digest.to_string(),
            "containerimage.config.digest": result.config_digest,
            "containerimage.descriptor": {
                "mediaType": result.media_type,
                "digest": result.manifest_digest.to_string(),
                "size": result.manifest_size,
            },
            "image.name": names.join(","),
            "wbuild.steps": { "ran": result.ran, "cached": result.cached },
        });
        let mut meta = meta;
        if !result.platforms.is_empty() {
            meta["wbuild.platforms"] = result
                .platforms
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "platform": p.platform,
                        "containerimage.digest": p.manifest_digest.to_string(),
                        "containerimage.config.digest": p.config_digest,
                        "attestation.digest": p.attestation.map(|d| d.to_string()),
                        "steps": { "ran": p.ran, "cached": p.cached },
                    })
                })
                .collect();
        }
        let mut text = serde_json::to_vec_pretty(&meta)?;
        text.push(b'\n');
        crate::sys::write_atomic(f, |w| std::io::Write::write_all(w, &text))
            .with_context(|| format!("writing --metadata-file {}", f.display()))?;
    }
    Ok(())
}
