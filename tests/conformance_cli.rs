//! `wbuild debug ast` through the real binary against BuildKit's parser test data: the dump of
//! every positive case matches `result`, every negative case fails with a located error.

mod common;

#[test]
fn debug_ast_matches_buildkit_results() {
    let wb = common::Wbuild::new();
    let dir = common::shared().join("conformance/buildkit/frontend/dockerfile/parser/testfiles");
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        let out = wb.run(&["debug", "ast", case.join("Dockerfile").to_str().unwrap()]);
        let got = String::from_utf8_lossy(&out.stdout);
        cases += 1;
        if !out.status.success() || got.trim_end() != expected.trim_end() {
            failures.push(format!(
                "{}:\n--- expected\n{expected}\n--- got\n{got}{}",
                case.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(cases > 20, "conformance data missing in {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn debug_ast_rejects_negative_cases_with_a_location() {
    let wb = common::Wbuild::new();
    let dir =
        common::shared().join("conformance/buildkit/frontend/dockerfile/parser/testfiles-negative");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path().join("Dockerfile");
        let err = wb.fails(&["debug", "ast", file.to_str().unwrap()]);
        assert!(
            err.contains(&format!("{}:", file.display())),
            "{}: error does not name the file and line:\n{err}",
            file.display()
        );
    }
}
