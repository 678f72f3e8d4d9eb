//! BuildKit's shell-lexer conformance data (`envVarTest`, `wordsTest`) run against
//! `wbuild_parser::shell`. Every failing line is collected and reported together.

use std::collections::HashMap;
use std::path::PathBuf;

use wbuild_parser::shell::{expand_word, expand_words};

fn data_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/conformance/buildkit/frontend/dockerfile/shell")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn report(file: &str, checked: usize, failures: &[String]) {
    assert!(checked > 0, "{file}: no cases found");
    assert!(
        failures.is_empty(),
        "{file}: {} of {checked} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `PLATFORM|input|expected`; `#` lines are comments, `W` (Windows-only) lines are skipped and
/// `error` means the expansion must fail.
#[test]
fn env_var_test() {
    let text = data_file("envVarTest");
    let env: HashMap<&str, &str> = HashMap::from([
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]);
    let lookup = |name: &str| env.get(name).map(|v| v.to_string());

    let mut failures = Vec::new();
    let mut checked = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').collect();
        let [platform, input, expected] = fields[..] else {
            failures.push(format!("line {number}: malformed: {line:?}"));
            continue;
        };
        let (platform, input, expected) = (platform.trim(), input.trim(), expected.trim());
        match platform {
            "W" => continue,
            "A" | "U" => {}
            _ => {
                failures.push(format!("line {number}: unknown platform {platform:?}"));
                continue;
            }
        }
        checked += 1;
        let got = expand_word(input, '\\', &lookup);
        let good = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(word), _) => expected != "error" && word == expected,
            (Err(_), _) => false,
        };
        if !good {
            failures.push(format!(
                "line {number}: {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    report("envVarTest", checked, &failures);
}

/// `input | w1,w2,...` (an error counts as the single word `error`); `ENV name=value` lines add
/// to the environment for the lines after them.
#[test]
fn words_test() {
    let text = data_file("wordsTest");
    let mut env: HashMap<String, String> = HashMap::new();

    let mut failures = Vec::new();
    let mut checked = 0;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(definition) = line.strip_prefix("ENV ") {
            let definition = definition.trim_start_matches(' ');
            let (name, value) = definition.split_once('=').unwrap_or((definition, ""));
            env.insert(name.to_string(), value.to_string());
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let [input, expected] = fields[..] else {
            failures.push(format!("line {number}: malformed: {line:?}"));
            continue;
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        checked += 1;
        let lookup = |name: &str| env.get(name).cloned();
        let got = expand_words(input, '\\', &lookup).unwrap_or_else(|_| vec!["error".to_string()]);
        if got != expected {
            failures.push(format!(
                "line {number}: {input:?}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    report("wordsTest", checked, &failures);
}
