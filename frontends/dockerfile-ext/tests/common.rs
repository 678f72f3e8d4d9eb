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
