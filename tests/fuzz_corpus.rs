//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and every input that once crashed a target
//! (`fuzz/regressions/<target>/`) through the same entry points the cargo-fuzz targets call, so
//! the normal test suite (stable Rust, no libFuzzer) keeps every fixed crash fixed.

mod common;

#[path = "../fuzz/src/graph.rs"]
mod graph;
#[path = "../fuzz/src/text.rs"]
mod text;

use std::path::Path;

/// Runs `entry` on every file of `fuzz/{corpus,regressions}/<target>/`; returns how many.
fn replay(target: &str, entry: fn(&[u8])) -> usize {
    let fuzz = common::repo().join("fuzz");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let name = f
                .strip_prefix(&fuzz)
                .unwrap_or(Path::new("?"))
                .display()
                .to_string();
            if let Err(e) = std::panic::catch_unwind(|| entry(&data)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("fuzz/{name} fails again: {msg}");
            }
            n += 1;
        }
    }
    n
}

#[test]
fn dockerfile_corpus_replays() {
    assert!(replay("dockerfile", text::dockerfile) > 0);
}

#[test]
fn ext_corpus_replays() {
    assert!(replay("ext", text::ext) > 0);
}

#[test]
fn expand_corpus_replays() {
    assert!(replay("expand", text::expand) > 0);
}

#[test]
fn graph_corpus_replays() {
    assert!(replay("graph", graph::graph) > 0);
}
