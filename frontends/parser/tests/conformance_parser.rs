//! BuildKit's parser test data: every `testfiles/<case>` must dump to its `result`, every
//! `testfiles-negative/<case>` must fail to parse.

use std::fs;
use std::path::PathBuf;

fn data_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/buildkit/frontend/dockerfile/parser")
        .join(kind)
}

fn cases(kind: &str) -> Vec<(String, PathBuf)> {
    let dir = data_dir(kind);
    let mut cases: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

#[test]
fn buildkit_testfiles_dump_as_expected() {
    let mut failures = Vec::new();
    let all = cases("testfiles");
    for (name, dir) in &all {
        let source = fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let expected = fs::read_to_string(dir.join("result")).unwrap();
        let expected = expected.trim_end_matches('\n');
        match wbuild_parser::parse(&source) {
            Ok(result) => {
                let got: Vec<String> = result.children.iter().map(|n| n.dump()).collect();
                let got = got.join("\n");
                if got != expected {
                    failures.push(format!("{name}:\n--- expected\n{expected}\n--- got\n{got}"));
                }
            }
            Err(e) => failures.push(format!("{name}: unexpected error: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

#[test]
fn buildkit_negative_testfiles_fail() {
    let mut failures = Vec::new();
    for (name, dir) in cases("testfiles-negative") {
        let source = fs::read_to_string(dir.join("Dockerfile")).unwrap();
        if let Ok(result) = wbuild_parser::parse(&source) {
            let got: Vec<String> = result.children.iter().map(|n| n.dump()).collect();
            failures.push(format!(
                "{name}: parsed, expected an error:\n{}",
                got.join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
