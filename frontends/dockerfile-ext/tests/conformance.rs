//! A Dockerfile without blocks means the same through the extended-syntax frontend as through
//! the Dockerfile frontend: the same IR, the same warnings, the same errors at the same places.
//! Checked on BuildKit's parser test files, the repository's examples and a set of files that
//! exercise the compiler's errors.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{FakeHost, input};

fn dockerfiles_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            dockerfiles_under(&p, out);
        } else if p.file_name().is_some_and(|n| n == "Dockerfile") {
            out.push(p);
        }
    }
}

/// Both frontends on `src` with each set of build args and targets give the same result.
fn same(name: &str, src: &str, failures: &mut Vec<String>) {
    let arg_sets: &[&[(&str, &str)]] = &[&[], &[("BUILD_VERSION", "2"), ("src", "b")]];
    for args in arg_sets {
        for target in [None, Some("build")] {
            let i = input(src, args, target);
            let plain = wbuild_frontend_dockerfile::compile::translate(&i, &FakeHost);
            let ext = wbuild_frontend_dockerfile_ext::translate(&i, &FakeHost);
            if plain != ext {
                failures.push(format!(
                    "{name} (args {args:?}, target {target:?}):\n--- dockerfile\n{plain:#?}\n--- dockerfile-ext\n{ext:#?}"
                ));
            }
        }
    }
}

#[test]
fn plain_dockerfiles_translate_identically() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    dockerfiles_under(
        &repo.join("../shared/conformance/buildkit/frontend/dockerfile/parser"),
        &mut files,
    );
    let buildkit = files.len();
    assert!(buildkit >= 29, "BuildKit's parser test files are missing");
    for example in fs::read_dir(repo.join("examples")).unwrap() {
        let p = example.unwrap().path().join("Dockerfile");
        // The extended-syntax example is the one file that differs on purpose.
        if p.exists() && !p.starts_with(repo.join("examples/if-else")) {
            files.push(p);
        }
    }
    assert!(files.len() > buildkit + 5, "the examples are missing");
    let mut failures = Vec::new();
    for f in &files {
        same(
            &f.display().to_string(),
            &fs::read_to_string(f).unwrap(),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn compiler_errors_are_identical() {
    let cases = [
        "RUN x\nFROM a\n",
        "FROM a AS build\nFROM build AS build\n",
        "FROM later\nFROM a AS later\n",
        "FROM a AS self\nFROM self AS x\nCOPY --from=x / /\n",
        "FROM a\nCOPY --from=later / /\nFROM b AS later\n",
        "FROM a\nCOPY --from=1 / /\nFROM b\n",
        "FROM --platform=$BAD a\n",
        "FROM --bogus a AS 1x\nFROM 1x\n",
        "FROM a\nRUN --mount=type=bind,from=later x\nFROM b AS later\n",
        "FROM a\nENV x\n",
        "FROM a\nRUN --network=bridge x\n",
        "FROM a\nHEALTHCHECK --interval=1ns CMD x\n",
        "FROM missing\nFROM a\n",
        "FROM missing AS build\nFROM a\n",
        "# check=error=true\nfrom a as B\nMAINTAINER me\nCMD x\n",
        "FROM onbuilder\nONBUILD RUN y\nFROM 0\n",
        "ARG X=${Y:?no Y}\nFROM a\n",
        "FROM a\nRUN <<EOF\nno end\n",
        "",
        "# only a comment\n",
        "FROM a\nFORM b\n",
    ];
    let mut failures = Vec::new();
    for src in cases {
        same(&format!("{src:?}"), src, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
