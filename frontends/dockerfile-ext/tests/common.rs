//! Test inputs and a fake host for the extended-syntax frontend's tests.

#![allow(dead_code)]

use wbuild_frontend_dockerfile::bindings::wbuild::frontend::host::ImageConfig;
use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types::{
    Diagnostic, Input, KeyValue, Platform, Translation,
};
use wbuild_frontend_dockerfile::compile::Host;

/// Knows every image: PATH in the env, plus a few special ones.
pub struct FakeHost;

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

impl Host for FakeHost {
    fn resolve_image_config(
        &self,
        reference: &str,
        _platform: &Platform,
    ) -> Result<ImageConfig, String> {
        let mut cfg = ImageConfig {
            digest: None,
            env: vec![kv("PATH", "/usr/local/bin:/usr/bin:/bin")],
            working_dir: String::new(),
            user: String::new(),
            shell: Vec::new(),
            onbuild: Vec::new(),
        };
        match reference {
            "golang:1.22" => cfg.env.push(kv("GOPATH", "/go")),
            "onbuilder" => cfg.onbuild = vec!["RUN echo triggered".into()],
            "missing" => return Err("image \"missing\" not found".into()),
            _ => {}
        }
        Ok(cfg)
    }
}

pub fn input(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Input {
    let platform = |arch: &str| Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: None,
    };
    Input {
        file_name: "Dockerfile".into(),
        context_path: Some("Dockerfile".into()),
        source: src.into(),
        build_args: args.iter().map(|(k, v)| kv(k, v)).collect(),
        target: target.map(Into::into),
        target_platform: platform("arm64"),
        build_platform: platform("amd64"),
    }
}

pub fn ext(src: &str, args: &[(&str, &str)]) -> Result<Translation, Vec<Diagnostic>> {
    wbuild_frontend_dockerfile_ext::translate(&input(src, args, None), &FakeHost)
}

pub fn plain(src: &str, args: &[(&str, &str)]) -> Result<Translation, Vec<Diagnostic>> {
    wbuild_frontend_dockerfile::compile::translate(&input(src, args, None), &FakeHost)
}

/// [`FakeHost`] with a build context: `files` by context path; records what was read.
pub struct FilesHost {
    pub files: std::collections::HashMap<String, String>,
    pub reads: std::cell::RefCell<Vec<String>>,
}

impl FilesHost {
    pub fn new(files: &[(&str, &str)]) -> FilesHost {
        FilesHost {
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            reads: Default::default(),
        }
    }
}

impl Host for FilesHost {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, String> {
        FakeHost.resolve_image_config(reference, platform)
    }

    fn read_context_file(&self, path: &str) -> Result<Vec<u8>, String> {
        self.reads.borrow_mut().push(path.to_string());
        self.files
            .get(path)
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| format!("{path}: no such file in the build context"))
    }
}

/// Translates `src` with the extended syntax and the context `files`.
pub fn ext_with(
    src: &str,
    args: &[(&str, &str)],
    host: &FilesHost,
) -> Result<Translation, Vec<Diagnostic>> {
    wbuild_frontend_dockerfile_ext::translate(&input(src, args, None), host)
}
