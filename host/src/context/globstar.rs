//! `**` in `COPY --parents` sources, as BuildKit: there the part of a source after the `/./`
//! pivot (the whole source without one) is an include pattern of moby/patternmatcher, where a
//! `**` component matches zero or more directories. Without `--parents` BuildKit resolves
//! sources with Go's `filepath.Match` per component, so `**` is just `*` there (and here).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::ignore::IgnoreRules;
use super::resolve::join;

/// How many cleaned leading components of `source` come before its `/./` pivot (0 without
/// one): those are resolved as plain per-component globs.
pub(crate) fn pivot_components(source: &str) -> usize {
    match source.find("/./") {
        Some(i) => {
            let before = super::pattern::clamp_to_root(&source[..i]);
            if before.is_empty() {
                0
            } else {
                before.split('/').count()
            }
        }
        None => 0,
    }
}

/// Each (logical, physical) directory followed by every directory below it (symlinks are not
/// followed, directories `.dockerignore` hides entirely are not entered), each once.
pub(crate) fn with_descendant_dirs(
    root: &Path,
    ignore: &IgnoreRules,
    states: Vec<(String, String)>,
) -> Result<Vec<(String, String)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut todo: Vec<(String, String)> = states.into_iter().rev().collect();
    while let Some((logical, phys)) = todo.pop() {
        if !seen.insert(logical.clone()) {
            continue;
        }
        let dir = if phys.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&phys)
        };
        let mut children = Vec::new();
        for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            if !e.file_type()?.is_dir() {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let child_phys = join(&phys, &name);
            if ignore.is_excluded(&child_phys, true) && ignore.can_skip_dir(&child_phys) {
                continue;
            }
            children.push((join(&logical, &name), child_phys));
        }
        children.sort_unstable();
        out.push((logical, phys));
        todo.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// The matches of a `**` source without duplicates and without those inside another match
/// (a directory match copies what is below it already), in path order.
pub(crate) fn outermost(mut found: Vec<super::resolve::Found>) -> Vec<super::resolve::Found> {
    found.sort_by(|a, b| a.logical.cmp(&b.logical));
    let mut out: Vec<super::resolve::Found> = Vec::new();
    for f in found {
        let inside = out.iter().any(|o| {
            o.logical == f.logical
                || o.logical.is_empty()
                || f.logical.starts_with(&format!("{}/", o.logical))
        });
        if !inside {
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pivot_counts_the_cleaned_components_before_it() {
        assert_eq!(pivot_components("/test/a/b*/./c/**/e"), 3);
        assert_eq!(pivot_components("./test/a"), 0);
        assert_eq!(pivot_components("x/./y"), 1);
        assert_eq!(pivot_components("src/**/*.go"), 0);
    }
}
