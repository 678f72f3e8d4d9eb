//! Fuzz entry points for build-file text: the Dockerfile parser and compiler, and shell-style
//! variable expansion. Also compiled into `tests/fuzz_corpus.rs` (by path).

use wbuild_frontend_dockerfile::bindings::wbuild::frontend::host::ImageConfig;
use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types as fe;
use wbuild_frontend_dockerfile::compile::{self, Host};

/// A host for the Dockerfile compiler that knows one image with a config and fails another.
struct FakeHost;

impl Host for FakeHost {
    fn resolve_image_config(
        &self,
        reference: &str,
        _platform: &fe::Platform,
    ) -> Result<ImageConfig, String> {
        if reference.starts_with("missing") {
            return Err(format!("{reference}: not found"));
        }
        Ok(ImageConfig {
            digest: None,
            env: vec![fe::KeyValue {
                key: "PATH".into(),
                value: "/usr/local/bin:/usr/bin:/bin".into(),
            }],
            working_dir: "/work".into(),
            user: String::new(),
            shell: Vec::new(),
            onbuild: if reference.starts_with("onbuild") {
                vec!["RUN echo hi".into(), "ENV A=b".into()]
            } else {
                Vec::new()
            },
        })
    }
}

fn platform() -> fe::Platform {
    fe::Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

/// What the fuzzed build file is compiled with.
fn input(source: &str) -> fe::Input {
    fe::Input {
        file_name: "Dockerfile".into(),
        context_path: None,
        source: source.into(),
        build_args: vec![fe::KeyValue {
            key: "V".into(),
            value: "1".into(),
        }],
        target: None,
        target_platform: platform(),
        build_platform: platform(),
    }
}

/// What every successful translation promises.
fn check_translation(t: &fe::Translation) {
    let n = t.graph.stages.len();
    assert!(n > 0, "a translation without stages");
    assert!((t.graph.target as usize) < n, "the target is not a stage");
}

/// The Dockerfile parser, its dump, and the compiler to the IR (the whole frontend, natively).
pub fn dockerfile(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(tree) = wbuild_parser::parse(source) {
        for node in &tree.children {
            let _ = node.dump();
        }
    }
    if let Ok(t) = compile::translate(&input(source), &FakeHost) {
        check_translation(&t);
    }
}

/// The extended syntax (`IF` / `ELSE IF` / `ELSE` / `DONE`): block matching, conditions and
/// the compiler, natively.
pub fn ext(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = wbuild_frontend_dockerfile_ext::translate(&input(source), &FakeHost) {
        check_translation(&t);
    }
}

/// Shell-style word expansion: the first byte picks the escape character, the rest is the word.
pub fn expand(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let escape = if first & 1 == 0 { '\\' } else { '`' };
    let env = |name: &str| -> Option<String> {
        match name {
            "A" => Some("a b  c".into()),
            "E" => Some(String::new()),
            "Q" => Some("\"'$`\\".into()),
            "P" => Some("/usr/local/bin:/usr/bin".into()),
            "L" => Some("x".repeat(1000)),
            _ => None,
        }
    };
    let one = wbuild_parser::shell::expand_word(word, escape, &env);
    let many = wbuild_parser::shell::expand_words(word, escape, &env);
    assert_eq!(
        one.is_ok(),
        many.is_ok(),
        "expand_word and expand_words disagree on {word:?}"
    );
}
