//! `wbuild frontends` (list, push) and `wbuild debug ast`.

use std::path::Path;

use anyhow::Context;

use super::{Reported, diagnostics};
use crate::frontend::embedded;
use crate::session::Session;

/// `wbuild frontends push FILE NAME`: checks that FILE is a frontend this wbuild can load, then
/// publishes it as a wasm OCI artifact.
pub(super) fn push_frontend(session: &Session, file: &Path, name: &str) -> anyhow::Result<()> {
    let rt = session.runtime()?;
    let fe = rt.load_file(file)?;
    let info = rt.info(&fe)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let image = crate::registry::ImageName::parse(name)?;
    let (digest, stats) = session
        .registry()
        .push_frontend(session.store(), &bytes, &image)?;
    println!(
        "pushed {} {} as {} ({} blobs uploaded, {} already there)",
        info.name,
        info.version,
        image.pinned(&digest.to_string()),
        stats.uploaded,
        stats.existing
    );
    Ok(())
}

/// `wbuild frontends`: the embedded frontends, then the other frontends compiled in the cache
/// (frontends used with `--frontend FILE.wasm` or `# syntax=FILE.wasm`), each with the name
/// and version it reports, its digest and where it came from.
pub(super) fn frontends(session: &Session) -> anyhow::Result<()> {
    let rt = session.runtime()?;
    let mut rows = Vec::new();
    let mut embedded_digests = Vec::new();
    for e in embedded::ALL {
        let fe = rt.load_bytes(e.name, e.bytes)?;
        let info = rt.info(&fe)?;
        embedded_digests.push(fe.digest.clone());
        rows.push([
            info.name,
            info.version,
            fe.digest,
            "embedded".to_string(),
            info.description,
        ]);
    }
    let cached = rt.cached()?;
    let mut artifact_bytes = 0;
    for artifact in &cached {
        artifact_bytes += artifact.artifact_size;
        let Some(meta) = &artifact.info else {
            rows.push([
                "?".into(),
                "?".into(),
                "?".into(),
                artifact.path.display().to_string(),
                "an artifact without its description (recompiled on next use)".into(),
            ]);
            continue;
        };
        if embedded_digests.contains(&meta.digest) {
            continue;
        }
        if !artifact.usable {
            rows.push([
                "?".into(),
                "?".into(),
                meta.digest.clone(),
                meta.source.clone(),
                "compiled by another version of wbuild (recompiled on next use)".into(),
            ]);
            continue;
        }
        let described = rt
            .load_cached(artifact)
            .and_then(|fe| rt.info(&fe).map(|i| (fe, i)));
        match described {
            Ok((fe, info)) => rows.push([
                info.name,
                info.version,
                fe.digest,
                meta.source.clone(),
                info.description,
            ]),
            Err(e) => rows.push([
                "?".into(),
                "?".into(),
                meta.digest.clone(),
                meta.source.clone(),
                format!("cannot be loaded: {e:#}"),
            ]),
        }
    }
    let header = ["NAME", "VERSION", "DIGEST", "SOURCE", "DESCRIPTION"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            line += &format!("{cell:<w$}  ");
        }
        line += &row[4];
        println!("{line}");
    }
    println!(
        "\n{} compiled in {} ({:.1} MiB)",
        cached.len(),
        session.store().frontend_cache_dir().display(),
        artifact_bytes as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

pub(super) fn debug_ast(file: &Path) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match wbuild_parser::parse(&source) {
        Ok(tree) => {
            for node in &tree.children {
                println!("{}", node.dump());
            }
            Ok(())
        }
        Err(e) => {
            let d = crate::frontend::Diagnostic {
                file: file.display().to_string(),
                line: e.line as u32,
                column: e.column as u32,
                message: e.message,
                text: e.text,
                included_from: vec![],
            };
            Err(Reported(diagnostics::render(&[d], &source, false)).into())
        }
    }
}
