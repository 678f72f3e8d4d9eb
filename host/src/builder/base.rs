//! The states a step starts from or reads: a stage's base (scratch, an image pulled or found in
//! the store, another stage's result), images used as `COPY --from` or mount sources, and the
//! digests those sources contribute to a step's cache key.

use std::collections::HashMap;

use anyhow::Context as _;

use super::{Builder, StageState};
use crate::context::{Context, IgnoreRules};
use crate::image::ConfigBuilder;
use crate::ir::{Base, ImageRef, Source, Span, Stage};
use crate::solve::{self, LayerRef, StepInputs};

impl Builder<'_> {
    /// The state a stage starts from. `at` is where the stage's FROM is, as errors name it
    /// (`Dockerfile:3`, or a fragment's `ci/base.Dockerfile:2 (included from Dockerfile:3)`).
    pub(super) fn base_state(
        &self,
        stage: &Stage,
        deps: &HashMap<u32, StageState>,
        at: &str,
    ) -> anyhow::Result<StageState> {
        let platform = stage.platform.clone().unwrap_or(self.opts.platform.clone());
        // Docker records the build time; SOURCE_DATE_EPOCH makes it reproducible.
        let created = Some(crate::image::config::rfc3339(
            self.opts.source_date_epoch.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            }),
        ));
        match &stage.base {
            Base::Stage(i) => {
                let mut state = deps[i].clone();
                // As BuildKit: a stage's ONBUILD triggers ran in the stage built on it (the
                // frontend ran them); they fire once and are not in the child's config.
                state.config.take_onbuild();
                Ok(state)
            }
            Base::Scratch => {
                let mut config = ConfigBuilder::scratch(&platform.os, &platform.architecture);
                config.created(created);
                Ok(StageState {
                    key: solve::stage_base_key(&stage.base, None, &platform),
                    config,
                    layers: vec![],
                    snapshot: None,
                    steps: vec![],
                    no_cache: false,
                })
            }
            Base::Image(r) => {
                let img = self
                    .images
                    .image(&r.reference, &platform)?
                    .with_context(|| {
                        format!(
                            "{at}: image {} is not in the store; pull it with `wbuild pull {}` or \
                         import it with `wbuild import`",
                            r.reference, r.reference
                        )
                    })?;
                let pinned = img.pinned();
                if stage.span.line > 0 {
                    self.progress
                        .message(&format!("  {} is {pinned}", r.reference));
                }
                let layers = img
                    .manifest
                    .layers()
                    .iter()
                    .zip(&img.config.rootfs.diff_ids)
                    .map(|(l, diff_id)| LayerRef {
                        digest: l.digest().to_string(),
                        diff_id: diff_id.clone(),
                        size: l.size(),
                        // Docker's layer types name the same bytes as OCI's.
                        media_type: crate::image::Compression::from_media_type(
                            l.media_type().as_ref(),
                        )
                        .map_or_else(
                            || l.media_type().to_string(),
                            |c| c.layer_media_type().to_string(),
                        ),
                    })
                    .collect();
                let mut config = ConfigBuilder::from_base(img.config.clone());
                // ONBUILD triggers were run by the frontend; they do not carry over.
                config.take_onbuild();
                config.created(created);
                config.config_only(&format!("FROM {pinned}"));
                let digest = img.manifest_digest.to_string();
                Ok(StageState {
                    key: solve::stage_base_key(&stage.base, Some(&digest), &platform),
                    config,
                    layers,
                    snapshot: None,
                    steps: vec![],
                    no_cache: false,
                })
            }
        }
    }

    /// The state of a local image used as a mount or copy source.
    pub(super) fn image_state(
        &self,
        r: &ImageRef,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<StageState> {
        let fake = Stage {
            name: None,
            base: Base::Image(r.clone()),
            platform: r.platform.clone(),
            ops: vec![],
            span: Span {
                line: 0,
                column: 0,
                end_line: 0,
                end_column: 0,
                file: None,
            },
            text: String::new(),
        };
        let at = format!("{}:0", self.opts.file_name);
        self.base_state(&fake, deps, &at)
    }

    /// The files a COPY or a mount reads from a stage or an image, as a context over their
    /// snapshot (no ignore rules); None for the build context itself.
    pub(super) fn source_root(
        &self,
        from: &Source,
        deps: &HashMap<u32, StageState>,
    ) -> anyhow::Result<Option<Context>> {
        let mut state = match from {
            Source::Context => return Ok(None),
            Source::Stage(i) => deps[i].clone(),
            Source::Image(r) => self.image_state(r, deps)?,
        };
        let root = self.rootfs(&mut state)?;
        Ok(Some(Context::with_rules(&root, IgnoreRules::default())?))
    }

    /// Record a stage's key or an image's manifest digest as an input of a step.
    pub(super) fn add_source_input(
        &self,
        from: &Source,
        deps: &HashMap<u32, StageState>,
        inputs: &mut StepInputs,
    ) -> anyhow::Result<()> {
        match from {
            Source::Context => {}
            Source::Stage(i) => inputs.stages.push(deps[i].key.to_string()),
            Source::Image(r) => {
                let platform = r.platform.clone().unwrap_or(self.opts.platform.clone());
                let img = self
                    .images
                    .resolve(&r.reference, &platform)?
                    .with_context(|| {
                        format!(
                            "{}: the image is not in the store; pull it with `wbuild pull {}` or \
                         import it with `wbuild import`",
                            r.reference, r.reference
                        )
                    })?;
                inputs.images.push(img.manifest_digest.to_string());
            }
        }
        Ok(())
    }
}
