//! `--no-cache-filter STAGE`: the steps of the named stages run even when the cache has them
//! (buildx's "do not cache specified stages"); the other stages use the cache as usual.

use anyhow::bail;

use crate::ir::{Graph, Stage};

/// Whether stage `index` is named by one of `filter` (a stage name, case-insensitive, or its
/// index).
pub(super) fn matches(filter: &[String], stage: &Stage, index: u32) -> bool {
    filter.iter().any(|f| {
        stage
            .name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(f))
            || f.parse::<u32>().is_ok_and(|i| i == index)
    })
}

/// Every name in `filter` must name a stage of `graph`.
pub(super) fn check(filter: &[String], graph: &Graph) -> anyhow::Result<()> {
    for f in filter {
        let found = graph
            .stages
            .iter()
            .enumerate()
            .any(|(i, s)| matches(std::slice::from_ref(f), s, i as u32));
        if !found {
            let names: Vec<&str> = graph
                .stages
                .iter()
                .filter_map(|s| s.name.as_deref())
                .collect();
            bail!(
                "--no-cache-filter {f}: no such stage (stages: {}; or give a stage's index)",
                if names.is_empty() {
                    "none named".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
    }
    Ok(())
}
