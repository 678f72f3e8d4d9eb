//! The session's side of a multi-platform build (or one with provenance): the translations
//! of the same request for each platform ([`Session::prepare`] once per platform: the
//! frontend gets that platform as TARGETPLATFORM, the host's as BUILDPLATFORM) built together
//! into one image index by [`crate::builder::build_platforms`].

use std::sync::Arc;

use super::{Prepared, Request, ResultFiles, write_result_files};
use crate::builder::{BuildOptions, BuildResult, PlatformBuild, ProvenanceRequest};
use crate::image::provenance::Mode;
use crate::progress::Progress;

/// Builds `prepared` — one translation of `request` per platform, in the order of
/// `--platform` — into one image index, with a provenance attestation per platform when
/// `provenance` says so; writes `files` about it.
pub fn build_platforms(
    prepared: Vec<Prepared<'_>>,
    request: &Request,
    mut opts: BuildOptions,
    provenance: Option<Mode>,
    files: &ResultFiles,
    progress: Arc<Progress>,
) -> anyhow::Result<BuildResult> {
    let Some(first) = prepared.first() else {
        anyhow::bail!("a build needs at least one platform");
    };
    opts.file_name = first.planned.file_name.clone();
    opts.limits.check_available()?;
    let session = first.session;
    let provenance = provenance.map(|mode| ProvenanceRequest {
        mode,
        file_digest: crate::image::sha256_digest(request.file.text.as_bytes()),
        frontend: first.planned.frontend_component.clone(),
        target: request.target.clone(),
        build_args: request.build_args.clone(),
    });
    let builds = prepared
        .iter()
        .map(|p| PlatformBuild {
            platform: p.platform.clone(),
            graph: &p.planned.translation.graph,
            images: p.images.clone(),
        })
        .collect();
    let tags = opts.tags.clone();
    let result = crate::builder::build_platforms(
        &session.store,
        &first.context,
        opts,
        progress,
        session.registry.clone(),
        builds,
        provenance,
    )?;
    drop(prepared);
    write_result_files(files, &result, &tags)?;
    Ok(result)
}
