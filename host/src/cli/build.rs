//! `wbuild build` and `wbuild plan`: the options turned into a [`Request`] and
//! [`BuildOptions`], the session called, the result printed.

use std::sync::Arc;

use anyhow::bail;

use super::args::{BuildOpts, PlanFormat, PlanOpts};
use super::parse::{parse_build_args, parse_secret, parse_ssh, read_build_file};
use super::{Reported, diagnostics};
use super::{daily, outputs};
use crate::builder::{BuildOptions, Output};
use crate::ir::{Platform, host_platform, parse_platforms};
use crate::progress::Progress;
use crate::registry::cache::{CacheSource, CacheTarget};
use crate::session::{Rejected, Request, ResultFiles, Session};

/// `--platform`'s list, checked; this machine's platform without it.
fn platforms(opts: &BuildOpts) -> anyhow::Result<Vec<Platform>> {
    match &opts.platform {
        Some(p) => parse_platforms(p),
        None => Ok(vec![host_platform()]),
    }
}

/// The frontend's inputs the options name (for the first platform of `--platform`).
fn request(opts: &BuildOpts) -> anyhow::Result<Request> {
    Ok(Request {
        frontend: opts.frontend.clone(),
        file: read_build_file(opts)?,
        context: opts.context.clone(),
        build_args: parse_build_args(&opts.build_args)?,
        target: opts.target.clone(),
        platform: platforms(opts)?.remove(0),
        pull: opts.pull,
        network: crate::graph::entitlements::parse_network(&opts.network)?,
        allow: crate::session::Entitlements::parse(&opts.allow)?,
        build_contexts: daily::named_contexts(&opts.daily)?,
    })
}

/// A frontend's diagnostics rendered for the terminal; other errors as they are.
fn rendered(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<Rejected>() {
        Ok(r) => Reported(diagnostics::render_with_files(
            &r.diagnostics,
            &r.text,
            &r.files_read,
            false,
        ))
        .into(),
        Err(e) => e,
    }
}

pub(super) fn plan(session: &Session, opts: &PlanOpts) -> anyhow::Result<()> {
    if platforms(&opts.build)?.len() > 1 {
        bail!(
            "plan shows the graph of one platform; give one of the --platform list, e.g. \
             --platform {}",
            crate::ir::platform_text(&platforms(&opts.build)?[0])
        );
    }
    let req = request(&opts.build)?;
    let (planned, images) = session.plan(&req).map_err(rendered)?;
    print_warnings(&planned);
    let plan = crate::graph::Plan::new(
        &planned.file_name,
        &planned.frontend,
        &planned.translation.graph,
        &planned.translation.warnings,
    );
    match opts.format {
        PlanFormat::Json => {
            // Every image reference the frontend resolved, pinned by digest.
            let mut v: serde_json::Value = serde_json::from_str(&plan.to_json())?;
            v["images"] = serde_json::to_value(images)?;
            v["run"] = serde_json::json!({
                "network": opts.build.network,
                "allow": opts.build.allow,
                "add_hosts": opts.build.add_hosts,
            });
            println!("{}", serde_json::to_string_pretty(&v)?)
        }
        PlanFormat::Dot => print!("{}", plan.to_dot()),
    }
    Ok(())
}

/// `--add-host NAME:IP` values, checked.
fn extra_hosts(opts: &BuildOpts) -> anyhow::Result<Vec<(String, std::net::IpAddr)>> {
    opts.add_hosts
        .iter()
        .map(|h| crate::graph::entitlements::parse_add_host(h))
        .collect()
}

fn print_warnings(planned: &crate::session::Planned) {
    if !planned.translation.warnings.is_empty() {
        eprint!(
            "{}",
            diagnostics::render_with_files(
                &planned.translation.warnings,
                &planned.source,
                &planned.files_read,
                true
            )
        );
    }
}

/// `--provenance`, or its default: mode=min when the result goes to a registry, as buildx.
fn provenance_mode(
    opts: &BuildOpts,
    outputs: &[Output],
) -> anyhow::Result<Option<crate::image::provenance::Mode>> {
    match &opts.provenance {
        Some(v) => crate::image::provenance::parse(v),
        None => Ok(outputs
            .iter()
            .any(|o| matches!(o, Output::Registry(_)))
            .then_some(crate::image::provenance::Mode::Min)),
    }
}

/// The build's options, every value checked before the store is touched.
fn build_options(opts: &BuildOpts) -> anyhow::Result<BuildOptions> {
    let mut outputs = opts
        .outputs
        .iter()
        .map(|o| outputs::parse(o))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if opts.push {
        if opts.tags.is_empty() {
            bail!("--push needs a name to push to: add -t NAME[:TAG]");
        }
        for t in &opts.tags {
            outputs.push(Output::Registry(t.clone()));
        }
    }
    if opts.load {
        outputs::check_load_platform(opts.platform.as_deref())?;
        outputs.push(Output::Load);
    }
    if platforms(opts)?.len() > 1 {
        outputs::check_multi_platform(&outputs)?;
    }
    outputs::check_one_stdout(&outputs)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse::<i64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970")
        })?),
        _ => None,
    };
    let limits = crate::exec::ResourceLimits {
        memory: opts
            .memory
            .as_deref()
            .map(crate::exec::parse_memory)
            .transpose()?,
        pids: opts.pids_limit,
        ulimits: opts.daily.ulimits()?,
    };
    Ok(BuildOptions {
        limits,
        extra_hosts: Vec::new(),
        jobs: opts
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        no_cache: opts.no_cache,
        tags: opts.tags.clone(),
        outputs,
        source_date_epoch,
        platform: platforms(opts)?.remove(0),
        file_name: String::new(),
        compression: opts.compression.with_level(opts.compression_level)?,
        ssh: opts
            .ssh
            .iter()
            .map(|s| parse_ssh(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        secrets: opts
            .secrets
            .iter()
            .map(|s| parse_secret(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        cache_from: opts
            .cache_from
            .iter()
            .map(|s| CacheSource::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        cache_to: opts
            .cache_to
            .iter()
            .map(|s| CacheTarget::parse(s))
            .collect::<anyhow::Result<Vec<_>>>()?,
        labels: opts.daily.labels()?,
        annotations: opts.daily.annotations()?,
        index_annotations: opts.daily.index_annotations()?,
        no_cache_stages: opts.daily.no_cache_filter.clone(),
        shm_size: opts.daily.shm_size()?,
    })
}

pub(super) fn build(session: &Session, opts: &BuildOpts) -> anyhow::Result<()> {
    let mut build_opts = build_options(opts)?;
    let req = request(opts)?;
    build_opts.extra_hosts = extra_hosts(opts)?;
    let prepared = session.prepare(&req).map_err(rendered)?;
    for w in &prepared.warnings {
        eprintln!("warning: {w}");
    }
    print_warnings(&prepared.planned);
    if opts.daily.call_check()? {
        return daily::report_check(&prepared.planned.translation.warnings);
    }
    let files = ResultFiles {
        iidfile: opts.iidfile.clone(),
        metadata_file: opts.metadata_file.clone(),
    };
    let quiet = opts.daily.quiet.then(daily::QuietLog::default);
    let progress = match &quiet {
        Some(q) => q.progress(),
        None => Progress::stderr(opts.progress),
    };
    // The live view ends before anything else is printed, the error of a failed build included.
    let platforms = platforms(opts)?;
    let provenance = provenance_mode(opts, &build_opts.outputs)?;
    if !build_opts.index_annotations.is_empty() && platforms.len() == 1 && provenance.is_none() {
        bail!(
            "--annotation index:…: this build writes one image manifest, no index; build several \
             platforms or with --provenance, or annotate the manifest (manifest:KEY=VALUE)"
        );
    }
    let build = |build_opts: BuildOptions| -> anyhow::Result<crate::builder::BuildResult> {
        if platforms.len() == 1 && provenance.is_none() {
            return prepared.build(build_opts, &files, Arc::clone(&progress));
        }
        // One translation per platform (the first is done), built together into one index.
        let mut all = vec![prepared];
        for p in &platforms[1..] {
            let mut r = req.clone();
            r.platform = p.clone();
            all.push(session.prepare(&r).map_err(rendered)?);
        }
        crate::session::build_platforms(
            all,
            &req,
            build_opts,
            provenance,
            &files,
            Arc::clone(&progress),
        )
    };
    let result = match build(build_opts) {
        Ok(r) => r,
        Err(e) => {
            progress.finish();
            if let Some(q) = &quiet {
                q.show();
            }
            return Err(e);
        }
    };
    if quiet.is_some() {
        println!("{}", result.config_digest);
    }
    for p in &result.platforms {
        progress.message(&format!(
            "{}: {} ({} steps ran, {} cached)",
            p.platform, p.manifest_digest, p.ran, p.cached
        ));
    }
    progress.message(&format!(
        "built {} ({} steps ran, {} cached)",
        result.manifest_digest, result.ran, result.cached
    ));
    for t in &opts.tags {
        progress.message(&format!("named {t}"));
    }
    progress.finish();
    if let Some(table) = crate::progress::profile::report() {
        eprint!("{table}");
    }
    Ok(())
}
