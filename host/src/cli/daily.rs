//! The `build` options users type daily with buildx: `--label`, `-q/--quiet`,
//! `--no-cache-filter`, `--shm-size`, `--ulimit`, `--annotation`, `--call=check`/`--check`, and
//! their parsing. (`plan` shares them through `BuildOpts`; it uses none of them.)

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct DailyOpts {
    /// Set a label on the image (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Print only the image ID (config digest) on standard output; the progress is shown only
    /// when the build fails
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Run every step of this stage, ignoring the build cache (repeatable)
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,

    /// Size of /dev/shm in RUN steps (`64m`, `1g` or bytes)
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub shm_size: Option<String>,

    /// An rlimit of RUN processes, as docker: nofile=1024:4096 (repeatable)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,

    /// An annotation on the image manifest, or with `index:` on the image index of a
    /// multi-platform build (repeatable)
    #[arg(long = "annotation", value_name = "[manifest:|index:]KEY=VALUE")]
    pub annotations: Vec<String>,

    /// What to do with the build file: build (default) or check (run the build checks, print
    /// the findings, build nothing; exit 1 when there are findings)
    #[arg(long = "call", value_name = "build|check")]
    pub call: Option<String>,

    /// Same as --call=check
    #[arg(long)]
    pub check: bool,

    /// A named context for `FROM NAME`, `COPY --from=NAME` and mounts from NAME: a directory,
    /// an image or an OCI layout (repeatable)
    #[arg(
        long = "build-context",
        value_name = "NAME=PATH|docker-image://REF|oci-layout://PATH[@TAG]"
    )]
    pub build_contexts: Vec<String>,
}

fn key_value<'a>(flag: &str, spec: &'a str) -> anyhow::Result<(&'a str, &'a str)> {
    match spec.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => bail!("{flag} {spec:?}: expected KEY=VALUE"),
    }
}

impl DailyOpts {
    /// `--label KEY=VALUE`, in order (a later one of a key wins).
    pub fn labels(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.labels
            .iter()
            .map(|l| key_value("--label", l).map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    /// `--annotation [manifest:]KEY=VALUE`: annotations of the image manifest (`index:` ones
    /// are [`DailyOpts::index_annotations`]). buildx's other targets (`manifest-descriptor:`,
    /// `index-descriptor:`, platform selectors) are refused.
    pub fn annotations(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for a in &self.annotations {
            let (k, v) = key_value("--annotation", a)?;
            let k = match k.split_once(':') {
                Some(("manifest", k)) => k,
                Some(("index", _)) => continue,
                Some((t, _)) if !t.contains('.') && !t.contains('/') => bail!(
                    "--annotation {a:?}: wbuild writes manifest annotations (no prefix or \
                     manifest:KEY=VALUE) and index annotations (index:KEY=VALUE), not {t:?} ones"
                ),
                _ => k,
            };
            out.insert(k.to_string(), v.to_string());
        }
        Ok(out)
    }

    /// `--annotation index:KEY=VALUE`: annotations of the image index (of a multi-platform
    /// build, or one with provenance).
    pub fn index_annotations(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for a in &self.annotations {
            let (k, v) = key_value("--annotation", a)?;
            if let Some(("index", k)) = k.split_once(':') {
                out.insert(k.to_string(), v.to_string());
            }
        }
        Ok(out)
    }

    /// `--shm-size` in bytes.
    pub fn shm_size(&self) -> anyhow::Result<Option<u64>> {
        self.shm_size
            .as_deref()
            .map(|s| {
                crate::exec::parse_memory(s).map_err(|e| anyhow::anyhow!("--shm-size {s:?}: {e}"))
            })
            .transpose()
    }

    /// `--ulimit`s.
    pub fn ulimits(&self) -> anyhow::Result<crate::exec::Ulimits> {
        let mut u = crate::exec::Ulimits::default();
        for spec in &self.ulimits {
            crate::exec::parse_ulimit(&mut u, spec)?;
        }
        Ok(u)
    }

    /// Whether this is `--call=check` / `--check` (a check, not a build).
    pub fn call_check(&self) -> anyhow::Result<bool> {
        match self.call.as_deref() {
            None => Ok(self.check),
            Some("build") if !self.check => Ok(false),
            Some("check") => Ok(true),
            Some("build") => bail!("--check and --call=build contradict each other"),
            Some(other) => bail!(
                "--call={other}: wbuild knows build and check (buildx's outline and targets \
                 are `wbuild plan`)"
            ),
        }
    }
}

/// `--call=check`: the frontend's findings (its build checks and other warnings, printed above
/// by `translate`), a summary, and exit 1 when there are any, as buildx.
pub fn report_check(warnings: &[crate::frontend::Diagnostic]) -> anyhow::Result<()> {
    if warnings.is_empty() {
        println!("Check complete, no warnings found.");
        return Ok(());
    }
    Err(super::Reported(format!(
        "Check complete, {} warning(s) have been found!",
        warnings.len()
    ))
    .into())
}

/// `-q`: the progress, kept in memory and shown only when the build fails.
#[derive(Clone, Default)]
pub struct QuietLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for QuietLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl QuietLog {
    pub fn progress(&self) -> std::sync::Arc<crate::progress::Progress> {
        crate::progress::Progress::to_writer(crate::progress::Mode::Plain, Box::new(self.clone()))
    }

    /// Writes what the build printed to stderr.
    pub fn show(&self) {
        use std::io::Write as _;
        let _ = std::io::stderr().write_all(&self.0.lock().unwrap());
    }
}

/// The `--build-context`s, parsed.
pub fn named_contexts(
    opts: &DailyOpts,
) -> anyhow::Result<Vec<(String, crate::image::named::NamedContext)>> {
    opts.build_contexts
        .iter()
        .map(|s| crate::image::named::parse(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_and_calls() {
        let o = DailyOpts {
            annotations: vec!["a=1".into(), "manifest:b=2".into(), "org.x:y=3".into()],
            ..Default::default()
        };
        let a = o.annotations().unwrap();
        assert_eq!(a["a"], "1");
        assert_eq!(a["b"], "2");
        assert_eq!(a["org.x:y"], "3");
        let o = DailyOpts {
            annotations: vec!["index:a=1".into(), "b=2".into()],
            ..Default::default()
        };
        assert_eq!(o.index_annotations().unwrap()["a"], "1");
        assert!(!o.annotations().unwrap().contains_key("a"));
        let o = DailyOpts {
            annotations: vec!["manifest-descriptor:a=1".into()],
            ..Default::default()
        };
        assert!(o.annotations().is_err());
        let o = DailyOpts {
            call: Some("outline".into()),
            ..Default::default()
        };
        assert!(o.call_check().is_err());
    }
}
