//! Tests of the compiler, with a fake host that knows a few image configs.

use std::cell::RefCell;

use super::*;

struct FakeHost {
    calls: RefCell<Vec<(String, String)>>,
}

impl FakeHost {
    fn new() -> Self {
        FakeHost {
            calls: RefCell::new(Vec::new()),
        }
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

impl Host for FakeHost {
    fn resolve_image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ImageConfig, String> {
        self.calls
            .borrow_mut()
            .push((reference.to_string(), values::format_platform(platform)));
        let mut cfg = ImageConfig {
            digest: None,
            env: vec![kv("PATH", "/usr/local/bin:/usr/bin:/bin")],
            working_dir: String::new(),
            user: String::new(),
            shell: Vec::new(),
            onbuild: Vec::new(),
        };
        match reference {
            "golang:1.22" => {
                cfg.env.push(kv("GOPATH", "/go"));
                cfg.working_dir = "/go".into();
            }
            "withshell" => cfg.shell = vec!["/bin/bash".into(), "-ec".into()],
            "onbuilder" => {
                cfg.onbuild = vec!["RUN echo triggered".into(), "ENV FROM_TRIGGER=1".into()]
            }
            "missing" => return Err("image \"missing\" not found".into()),
            _ => {}
        }
        Ok(cfg)
    }
}

fn platform(arch: &str) -> Platform {
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: None,
    }
}

fn input(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Input {
    Input {
        file_name: "Dockerfile".into(),
        context_path: None,
        source: src.into(),
        build_args: args.iter().map(|(k, v)| kv(k, v)).collect(),
        target: target.map(Into::into),
        target_platform: platform("arm64"),
        build_platform: platform("amd64"),
    }
}

fn build(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Translation {
    match translate(&input(src, args, target), &FakeHost::new()) {
        Ok(t) => t,
        Err(e) => panic!("unexpected errors: {e:#?}"),
    }
}

fn ok(src: &str) -> Translation {
    build(src, &[], None)
}

fn fail(src: &str) -> Vec<Diagnostic> {
    fail_with(src, &[], None)
}

fn fail_with(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Vec<Diagnostic> {
    match translate(&input(src, args, target), &FakeHost::new()) {
        Ok(t) => panic!("expected an error, got {:#?}", t.graph),
        Err(e) => e,
    }
}

fn ops(t: &Translation, stage: usize) -> Vec<Op> {
    t.graph.stages[stage]
        .ops
        .iter()
        .map(|o| o.op.clone())
        .collect()
}

fn runs(t: &Translation, stage: usize) -> Vec<RunOp> {
    ops(t, stage)
        .into_iter()
        .filter_map(|o| match o {
            Op::Run(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn copies(t: &Translation, stage: usize) -> Vec<CopyOp> {
    ops(t, stage)
        .into_iter()
        .filter_map(|o| match o {
            Op::Copy(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn sh(line: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), line.into()]
}

fn image(t: &Translation, stage: usize) -> String {
    match &t.graph.stages[stage].base {
        Base::Image(r) => r.reference.clone(),
        other => panic!("not an image base: {other:?}"),
    }
}

fn env_op(t: &Translation, stage: usize, n: usize) -> Vec<KeyValue> {
    ops(t, stage)
        .into_iter()
        .filter_map(|o| match o {
            Op::Env(e) => Some(e),
            _ => None,
        })
        .nth(n)
        .unwrap()
}

// ---- stages ----

#[test]
fn basic_stage() {
    let t = ok("FROM alpine:3.20\nRUN echo hi\nCMD [\"sh\"]\n");
    assert_eq!(t.graph.stages.len(), 1);
    assert_eq!(t.graph.target, 0);
    let s = &t.graph.stages[0];
    assert_eq!(s.name, None);
    assert_eq!(image(&t, 0), "alpine:3.20");
    assert_eq!(s.text, "FROM alpine:3.20");
    assert_eq!(s.span.line, 1);
    assert_eq!(s.ops[0].text, "RUN echo hi");
    assert_eq!(s.ops[0].span.line, 2);
    assert_eq!(runs(&t, 0)[0].args, sh("echo hi"));
    assert_eq!(runs(&t, 0)[0].network, Network::Default);
    assert_eq!(ops(&t, 0)[1], Op::Cmd(Some(vec!["sh".into()])));
}

#[test]
fn scratch_and_named_stages() {
    let t = ok(
        "FROM scratch AS Base\nFROM base\nFROM golang:1.22 AS build\nCOPY --from=0 /a /b\nCOPY --from=BASE /c /d\n",
    );
    assert_eq!(t.graph.stages[0].base, Base::Scratch);
    assert_eq!(t.graph.stages[0].name.as_deref(), Some("base"));
    assert_eq!(t.graph.stages[1].base, Base::Stage(0));
    assert_eq!(t.graph.stages[2].name.as_deref(), Some("build"));
    let c = copies(&t, 2);
    assert_eq!(c[0].from, Source::Stage(0));
    assert_eq!(c[1].from, Source::Stage(0));
    assert_eq!(c[0].sources, vec![CopySource::Path("/a".into())]);
    assert_eq!(c[0].dest, "/b");
    assert_eq!(t.graph.target, 2);
    // stage name casing is a lint warning
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains("StageNameCasing"))
    );
}

#[test]
fn copy_from_image_and_errors() {
    let t = ok("FROM alpine\nCOPY --from=nginx:latest /etc/nginx /etc/nginx\n");
    assert!(matches!(&copies(&t, 0)[0].from, Source::Image(r) if r.reference == "nginx:latest"));
    let e = fail("FROM alpine AS a\nCOPY --from=a /x /y\n");
    assert!(e[0].message.contains("circular"), "{e:?}");
    let e = fail("FROM alpine AS a\nCOPY --from=1 /x /y\nFROM alpine AS b\n");
    assert!(e[0].message.contains("not an earlier stage"), "{e:?}");
    let e = fail("FROM alpine AS a\nCOPY --from=b /x /y\nFROM alpine AS b\n");
    assert!(e[0].message.contains("later"), "{e:?}");
    assert_eq!(e[0].line, 2);
}

#[test]
fn copy_from_with_variable_is_rejected() {
    let src = "ARG src=a\nFROM alpine AS build-a\nFROM alpine\nCOPY --from=build-${src} /x /y\n";
    let e = fail(src);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, 4);
    assert_eq!(e[0].column, 6);
    assert_eq!(e[0].text, "--from=build-${src}");
    assert!(e[0].message.contains("--from=build-${src}"));
    assert!(e[0].message.contains("variables are not allowed"));
    assert_eq!(e[0].file, "Dockerfile");
}

#[test]
fn target_selection() {
    let src = "FROM alpine AS Build\nFROM alpine AS test\nFROM alpine\n";
    assert_eq!(ok(src).graph.target, 2);
    assert_eq!(build(src, &[], Some("build")).graph.target, 0);
    assert_eq!(build(src, &[], Some("TEST")).graph.target, 1);
    let e = fail_with(src, &[], Some("nope"));
    assert!(e[0].message.contains("\"nope\""));
    assert!(e[0].message.contains("build, test"), "{}", e[0].message);
}

#[test]
fn branch_by_arg_pattern() {
    let src = "ARG V=1\nFROM alpine AS base\nFROM base AS branch-version-1\nRUN echo 1\n\
               FROM base AS branch-version-2\nRUN echo 2\nFROM branch-version-${V} AS final\n";
    let t = ok(src);
    assert_eq!(t.graph.stages[1].base, Base::Stage(0));
    assert_eq!(t.graph.stages[3].base, Base::Stage(1));
    assert_eq!(t.graph.target, 3);
    let t = build(src, &[("V", "2")], None);
    assert_eq!(t.graph.stages[3].base, Base::Stage(2));
    assert!(t.warnings.iter().all(|w| !w.message.contains("consumed")));
}

#[test]
fn stage_errors() {
    let e = fail("FROM alpine AS 1bad\n");
    assert!(e[0].message.contains("invalid name for build stage"));
    let e = fail("FROM alpine AS a\nFROM alpine AS A\n");
    assert!(e[0].message.contains("duplicate stage name"));
    assert_eq!(e[0].line, 2);
    let e = fail("FROM alpine AS\n");
    assert!(e[0].message.contains("FROM requires"));
    let e = fail("FROM a AS a\n");
    assert!(e[0].message.contains("circular"));
    let e = fail("RUN echo\nFROM alpine\n");
    assert!(e[0].message.contains("before the first FROM"));
    assert_eq!((e[0].line, e[0].column), (1, 1));
    assert_eq!(e[0].text, "RUN echo");
    let e = fail("ARG X\n");
    assert!(e[0].message.contains("no FROM"));
    let e = fail("FROM $NOPE\n");
    assert!(e[0].message.contains("should not be blank"));
}

#[test]
fn unresolvable_image_only_fails_reachable_stages() {
    let e = fail("FROM missing\n");
    assert!(e[0].message.contains("not found"));
    let t = ok("FROM missing AS x\nFROM alpine\n");
    assert_eq!(t.graph.stages.len(), 2);
    assert!(t.warnings.iter().any(|w| w.message.contains("not found")));
}

#[test]
fn platform_flag() {
    let host = FakeHost::new();
    let t = translate(
        &input(
            "FROM --platform=$BUILDPLATFORM golang:1.22 AS b\nFROM alpine\nFROM --platform=linux/arm/v7 b\n",
            &[],
            None,
        ),
        &host,
    )
    .unwrap();
    assert_eq!(t.graph.stages[0].platform, Some(platform("amd64")));
    assert!(
        matches!(&t.graph.stages[0].base, Base::Image(r) if r.platform == Some(platform("amd64")))
    );
    assert_eq!(t.graph.stages[1].platform, None);
    assert_eq!(
        t.graph.stages[2]
            .platform
            .as_ref()
            .unwrap()
            .variant
            .as_deref(),
        Some("v7")
    );
    let calls = host.calls.borrow();
    assert!(calls.contains(&("golang:1.22".into(), "linux/amd64".into())));
    assert!(calls.contains(&("alpine".into(), "linux/arm64".into())));
    let e = fail("FROM --platform=a/b/c/d alpine\n");
    assert_eq!(e[0].text, "--platform=a/b/c/d");
    let e = fail("FROM --plat=x alpine\n");
    assert_eq!(e[0].message, "unknown flag: --plat");
}

// ---- ARG scoping ----

#[test]
fn global_args_only_in_from() {
    let t = ok("ARG IMG=alpine\nARG TAG=3\nFROM ${IMG}:$TAG\nRUN echo $IMG\nENV X=${IMG}\n");
    assert_eq!(image(&t, 0), "alpine:3");
    // RUN is not expanded, and the global ARG is not in its env
    assert_eq!(runs(&t, 0)[0].args, sh("echo $IMG"));
    assert!(runs(&t, 0)[0].extra_env.is_empty());
    assert_eq!(env_op(&t, 0, 0), vec![kv("X", "")]);
}

#[test]
fn redeclared_global_arg() {
    let t = ok("ARG TAG=3\nFROM alpine\nARG TAG\nENV X=$TAG\nRUN true\n");
    assert_eq!(env_op(&t, 0, 0), vec![kv("X", "3")]);
    assert_eq!(
        ops(&t, 0)[0],
        Op::Arg(ArgDecl {
            key: "TAG".into(),
            value: Some("3".into())
        })
    );
    assert_eq!(runs(&t, 0)[0].extra_env, vec![kv("TAG", "3")]);
}

#[test]
fn build_args_override() {
    let src = "ARG TAG=3\nFROM alpine:$TAG\nARG TAG\nARG LOCAL=dflt\nARG NOVAL\nRUN make\n";
    let t = build(
        src,
        &[("TAG", "4"), ("LOCAL", "cli"), ("UNUSED", "x")],
        None,
    );
    assert_eq!(image(&t, 0), "alpine:4");
    let r = &runs(&t, 0)[0];
    assert_eq!(r.extra_env, vec![kv("TAG", "4"), kv("LOCAL", "cli")]);
    assert!(t.warnings.iter().any(|w| w.message.contains("UNUSED")));
    let t = ok(src);
    assert_eq!(
        runs(&t, 0)[0].extra_env,
        vec![kv("TAG", "3"), kv("LOCAL", "dflt")]
    );
}

/// BuildKit's `dispatchArg` adds an ARG's value to the same environment ENV sets, so an ARG
/// after an ENV of its name wins for expansion and RUN (the Dockerfile reference says ENV
/// always wins); an ENV after it wins again; an ARG without a value changes nothing.
#[test]
fn the_later_of_env_and_arg_wins() {
    let t = ok("FROM alpine\nENV A=env\nARG A=arg\nARG B=b\nENV C=$A-$B\nRUN x\n");
    assert_eq!(env_op(&t, 0, 1), vec![kv("C", "arg-b")]);
    assert_eq!(runs(&t, 0)[0].extra_env, vec![kv("A", "arg"), kv("B", "b")]);
    let t = ok("FROM alpine\nARG A=arg\nENV A=env\nARG A\nRUN x\n");
    assert!(runs(&t, 0)[0].extra_env.is_empty());
}

#[test]
fn arg_default_expands_stage_env() {
    let t = ok("FROM golang:1.22\nARG DIR=$GOPATH/src\nWORKDIR $DIR\n");
    assert_eq!(ops(&t, 0)[1], Op::Workdir("/go/src".into()));
}

#[test]
fn predefined_platform_args() {
    let t = ok(
        "FROM alpine:$TARGETARCH\nRUN echo\nARG TARGETARCH\nARG BUILDPLATFORM\nENV A=$TARGETARCH B=$BUILDPLATFORM C=$TARGETOS\n",
    );
    assert_eq!(image(&t, 0), "alpine:arm64");
    // not declared before the RUN: not visible
    assert!(runs(&t, 0)[0].extra_env.is_empty());
    assert_eq!(
        env_op(&t, 0, 0),
        vec![kv("A", "arm64"), kv("B", "linux/amd64"), kv("C", "")]
    );
}

#[test]
fn proxy_args_reach_run_without_declaration() {
    let t = build(
        "FROM alpine\nRUN curl x\n",
        &[("HTTP_PROXY", "http://p:3128"), ("no_proxy", "localhost")],
        None,
    );
    assert_eq!(
        runs(&t, 0)[0].extra_env,
        vec![
            kv("HTTP_PROXY", "http://p:3128"),
            kv("no_proxy", "localhost")
        ]
    );
    assert!(t.warnings.iter().all(|w| !w.message.contains("consumed")));
}

#[test]
fn args_inherited_from_base_stage() {
    let t =
        ok("FROM alpine AS a\nARG V=1\nENV E=e\nWORKDIR /w\nFROM a\nRUN x\nENV Y=$V$E\nCOPY f g\n");
    assert_eq!(runs(&t, 1)[0].extra_env, vec![kv("V", "1")]);
    assert_eq!(env_op(&t, 1, 0), vec![kv("Y", "1e")]);
}

// ---- expansion paths ----

#[test]
fn expansion_in_config_instructions() {
    let src = "FROM golang:1.22\nARG P=8080\nARG U=app\nARG S=SIGTERM\nARG V=/data\nARG L=v1\n\
               EXPOSE $P 53/udp\nUSER ${U}:${U}\nSTOPSIGNAL $S\nVOLUME $V \"/other\"\n\
               LABEL version=$L \"other\"=\"a b\"\nWORKDIR src\nWORKDIR ../$U\nENV PATH=$PATH:$GOPATH/bin\n";
    let t = ok(src);
    let o = ops(&t, 0);
    assert!(o.contains(&Op::Expose(vec!["8080/tcp".into(), "53/udp".into()])));
    assert!(o.contains(&Op::User("app:app".into())));
    assert!(o.contains(&Op::Stopsignal("SIGTERM".into())));
    assert!(o.contains(&Op::Volume(vec!["/data".into(), "/other".into()])));
    assert!(o.contains(&Op::Label(vec![kv("version", "v1"), kv("other", "a b")])));
    assert!(o.contains(&Op::Workdir("/go/src".into())));
    assert!(o.contains(&Op::Workdir("/go/app".into())));
    assert!(o.contains(&Op::Env(vec![kv(
        "PATH",
        "/usr/local/bin:/usr/bin:/bin:/go/bin"
    )])));
}

#[test]
fn env_pairs_expand_against_previous_env() {
    let t = ok("FROM scratch\nENV A=1\nENV A=2 B=$A\nENV C=\"quoted $A\" D='single $A'\n");
    assert_eq!(env_op(&t, 0, 1), vec![kv("A", "2"), kv("B", "1")]);
    assert_eq!(
        env_op(&t, 0, 2),
        vec![kv("C", "quoted 2"), kv("D", "single $A")]
    );
}

#[test]
fn copy_flags_expand() {
    let t = ok(
        "FROM alpine\nARG U=1000\nARG M=755\nARG D=/app\nARG F=file\n\
                COPY --chown=$U:$U --chmod=$M --link --exclude=*.md --exclude=$F $F ${F}2 $D/\n",
    );
    let c = &copies(&t, 0)[0];
    assert_eq!(c.chown.as_deref(), Some("1000:1000"));
    assert_eq!(c.chmod, Some(FileMode::Octal(0o755)));
    assert!(c.link);
    assert_eq!(c.excludes, vec!["*.md".to_string(), "file".into()]);
    assert_eq!(
        c.sources,
        vec![
            CopySource::Path("file".into()),
            CopySource::Path("file2".into())
        ]
    );
    assert_eq!(c.dest, "/app/");
    assert_eq!(c.add, None);
    assert_eq!(c.from, Source::Context);
}

#[test]
fn chmod_modes() {
    let t = ok("FROM alpine\nCOPY --chmod=u+x,g-w a b\n");
    assert_eq!(
        copies(&t, 0)[0].chmod,
        Some(FileMode::Symbolic("u+x,g-w".into()))
    );
    let e = fail("FROM alpine\nCOPY --chmod=bogus a b\n");
    assert!(e[0].message.contains("invalid chmod"));
    assert_eq!(e[0].text, "--chmod=bogus");
    let e = fail("FROM alpine\nCOPY --chmod=999 a b\n");
    assert!(e[0].message.contains("invalid chmod"));
}

#[test]
fn copy_and_add_errors() {
    let e = fail("FROM alpine\nCOPY onlyone\n");
    assert!(e[0].message.contains("at least two arguments"));
    assert_eq!(e[0].line, 2);
    let e = fail("FROM alpine\nCOPY https://x/y /z\n");
    assert!(e[0].message.contains("URL"));
    let e = fail("FROM alpine\nCOPY --foo a b\n");
    assert_eq!(e[0].message, "unknown flag: --foo");
    assert_eq!((e[0].line, e[0].column), (2, 6));
    let e = fail("FROM alpine\nADD --from=x a b\n");
    assert_eq!(e[0].message, "unknown flag: --from");
    let e = fail("FROM alpine\nADD --checksum=sha256:abc a b\n");
    assert!(e[0].message.contains("checksum"));
}

#[test]
fn add_sources() {
    let t = ok(
        "FROM alpine\nADD --checksum=sha256:0123 https://example.com/a.tar.gz /x/\n\
                ADD --keep-git-dir git@github.com:moby/buildkit.git#v0.10 /src\nADD --unpack=false a.tar /y\n",
    );
    let c = copies(&t, 0);
    assert_eq!(
        c[0].sources,
        vec![CopySource::Url("https://example.com/a.tar.gz".into())]
    );
    let a = c[0].add.as_ref().unwrap();
    assert_eq!(a.checksum.as_deref(), Some("sha256:0123"));
    assert_eq!(a.unpack, None);
    assert_eq!(
        c[1].sources,
        vec![CopySource::Git(
            "git@github.com:moby/buildkit.git#v0.10".into()
        )]
    );
    assert!(c[1].add.as_ref().unwrap().keep_git_dir);
    assert_eq!(c[2].add.as_ref().unwrap().unpack, Some(false));
}

#[test]
fn copy_heredocs() {
    let t = ok(
        "FROM alpine\nARG NAME=world\nCOPY <<EOF /hello\nhello \"$NAME\"\nEOF\nCOPY <<'EOF' /raw\nhi $NAME\nEOF\n",
    );
    let c = copies(&t, 0);
    assert_eq!(
        c[0].sources,
        vec![CopySource::Inline(InlineFile {
            name: "EOF".into(),
            content: "hello \"world\"\n".into()
        })]
    );
    assert_eq!(
        c[1].sources,
        vec![CopySource::Inline(InlineFile {
            name: "EOF".into(),
            content: "hi $NAME\n".into()
        })]
    );
}

// ---- RUN ----

#[test]
fn run_forms_and_shell() {
    let t = ok(
        "FROM withshell\nRUN echo a\nSHELL [\"/bin/zsh\", \"-c\"]\nRUN echo b\nRUN [\"ls\", \"-l\"]\n",
    );
    let r = runs(&t, 0);
    assert_eq!(r[0].args, vec!["/bin/bash", "-ec", "echo a"]);
    assert_eq!(r[1].args, vec!["/bin/zsh", "-c", "echo b"]);
    assert_eq!(r[2].args, vec!["ls", "-l"]);
    let e = fail("FROM alpine\nSHELL /bin/bash\n");
    assert!(e[0].message.contains("JSON"));
}

#[test]
fn run_heredocs() {
    let t = ok(
        "FROM alpine\nRUN <<EOF\necho one\necho two\nEOF\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\nRUN cat <<EOF > /f\nbody\nEOF\n",
    );
    let r = runs(&t, 0);
    assert_eq!(r[0].args, sh("echo one\necho two\n"));
    assert_eq!(r[1].args, vec!["/dev/pipes/EOF"]);
    assert_eq!(
        r[1].mounts,
        vec![Mount::Text(TextMount {
            target: "/dev/pipes/EOF".into(),
            content: "#!/usr/bin/env python3\nprint(1)\n".into(),
            mode: 0o755
        })]
    );
    assert_eq!(r[2].args, sh("cat <<EOF > /f\nbody\nEOF"));
}

#[test]
fn run_network_modes() {
    let t = ok(
        "FROM alpine\nRUN a\nRUN --network=default b\nRUN --network=none c\n\
                RUN --network=host d\n",
    );
    let modes: Vec<Network> = runs(&t, 0).iter().map(|r| r.network).collect();
    assert_eq!(
        modes,
        [
            Network::Default,
            Network::Default,
            Network::None,
            Network::Host
        ]
    );
}

#[test]
fn run_flags() {
    let src = "FROM alpine AS dep\nFROM golang:1.22\nARG CACHE=/root/.cache\nWORKDIR /src\n\
               RUN --network=host --security=insecure \
               --mount=type=cache,target=$CACHE,sharing=locked,mode=0700,uid=1 \
               --mount=from=dep,source=/out,target=/in,rw \
               --mount=type=secret,id=tok,env=TOKEN,required \
               --mount=type=ssh \
               --mount=type=tmpfs,dst=tmp,size=64m \
               --mount=type=bind,from=busybox,target=/bb \
               go build\n";
    let t = ok(src);
    let r = &runs(&t, 1)[0];
    assert_eq!(r.network, Network::Host);
    assert_eq!(r.security, Security::Insecure);
    assert_eq!(r.args, sh("go build"));
    let m = &r.mounts;
    assert!(
        matches!(&m[0], Mount::Cache(c) if c.target == "/root/.cache" && c.id == "/root/.cache"
        && c.sharing == crate::bindings::wbuild::frontend::types::CacheSharing::Locked
        && c.mode == 0o700 && c.uid == 1 && !c.readonly)
    );
    assert!(matches!(&m[1], Mount::Bind(b) if b.from == Source::Stage(0)
        && b.source_path == "/out" && b.target == "/in" && b.readwrite));
    assert!(
        matches!(&m[2], Mount::Secret(s) if s.id == "tok" && s.target.is_none()
        && s.env.as_deref() == Some("TOKEN") && s.required && s.mode == 0o400)
    );
    assert!(matches!(&m[3], Mount::Ssh(s) if s.id == "default"
        && s.target == "/run/buildkit/ssh_agent.0"));
    assert!(matches!(&m[4], Mount::Tmpfs(x) if x.target == "/src/tmp" && x.size == Some(64 << 20)));
    assert!(
        matches!(&m[5], Mount::Bind(b) if matches!(&b.from, Source::Image(r) if r.reference == "busybox")
        && !b.readwrite)
    );
}

#[test]
fn run_flag_errors() {
    let e = fail("FROM alpine\nRUN --network=bridge x\n");
    assert!(e[0].message.contains("network"));
    assert_eq!(e[0].text, "--network=bridge");
    let e = fail("FROM alpine\nRUN --mount=type=nfs,target=/x x\n");
    assert!(e[0].message.contains("unsupported mount type"));
    let e = fail("FROM alpine\nRUN --mount=type=cache x\n");
    assert!(e[0].message.contains("requires a target"));
    let e = fail("FROM alpine AS a\nRUN --mount=from=a,target=/x x\n");
    assert!(e[0].message.contains("circular"));
    let e = fail("FROM alpine\nRUN --mount=type=cache,target=/x,sharing=weird x\n");
    assert!(e[0].message.contains("sharing"));
    let e = fail("FROM alpine\nRUN --mount=type=cache,target=/x,bogus=1 x\n");
    assert!(e[0].message.contains("bogus"));
    let e = fail("FROM alpine\nRUN --mount=type=secret x\n");
    assert!(e[0].message.contains("secret"));
}

// ---- CMD / ENTRYPOINT / HEALTHCHECK / ONBUILD ----

#[test]
fn entrypoint_resets_cmd() {
    let t = ok("FROM alpine\nENTRYPOINT [\"/app\"]\nCMD [\"--help\"]\n");
    let o = ops(&t, 0);
    assert_eq!(o[0], Op::Entrypoint(Some(vec!["/app".into()])));
    assert_eq!(o[1], Op::Cmd(None));
    assert_eq!(o[2], Op::Cmd(Some(vec!["--help".into()])));
    let t = ok("FROM alpine\nCMD [\"x\"]\nENTRYPOINT run me\n");
    let o = ops(&t, 0);
    assert_eq!(o.len(), 2);
    assert_eq!(o[1], Op::Entrypoint(Some(sh("run me"))));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains("JSONArgsRecommended"))
    );
}

#[test]
fn healthcheck() {
    let t = ok(
        "FROM alpine\nHEALTHCHECK --interval=30s --timeout=1m30s --retries=3 CMD curl -f http://localhost/\n\
                HEALTHCHECK NONE\nHEALTHCHECK --start-period=5s --start-interval=500ms CMD [\"/check\", \"-v\"]\n",
    );
    let o = ops(&t, 0);
    assert_eq!(
        o[0],
        Op::Healthcheck(Healthcheck {
            test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
            interval: Some(30_000_000_000),
            timeout: Some(90_000_000_000),
            start_period: None,
            start_interval: None,
            retries: Some(3),
        })
    );
    assert!(matches!(&o[1], Op::Healthcheck(h) if h.test == vec!["NONE".to_string()]));
    assert!(
        matches!(&o[2], Op::Healthcheck(h) if h.test == vec!["CMD".to_string(), "/check".into(), "-v".into()]
        && h.start_period == Some(5_000_000_000) && h.start_interval == Some(500_000_000))
    );
    let e = fail("FROM alpine\nHEALTHCHECK --interval=5 CMD x\n");
    assert_eq!(e[0].text, "--interval=5");
    let e = fail("FROM alpine\nHEALTHCHECK WHAT x\n");
    assert!(e[0].message.contains("try CMD"));
}

#[test]
fn onbuild_and_triggers() {
    let t = ok("FROM alpine AS a\nONBUILD RUN echo later\nFROM a\nRUN echo now\n");
    assert_eq!(ops(&t, 0), vec![Op::Onbuild("RUN echo later".into())]);
    let r = runs(&t, 1);
    assert_eq!(r[0].args, sh("echo later"));
    assert_eq!(t.graph.stages[1].ops[0].span.line, 3);
    assert_eq!(r[1].args, sh("echo now"));

    let t = ok("FROM onbuilder\nENV X=$FROM_TRIGGER\n");
    let o = ops(&t, 0);
    assert_eq!(
        o[0],
        Op::Run(RunOp {
            args: sh("echo triggered"),
            extra_env: vec![],
            network: Network::Default,
            security: Security::Sandbox,
            mounts: vec![],
        })
    );
    assert_eq!(t.graph.stages[0].ops[0].text, "RUN echo triggered");
    assert_eq!(o[2], Op::Env(vec![kv("X", "1")]));

    let e = fail("FROM alpine\nONBUILD FROM x\n");
    assert!(e[0].message.contains("isn't allowed"));
}

#[test]
fn maintainer_and_unknown() {
    let t = ok("FROM alpine\nMAINTAINER Jane Doe <j@x>\n");
    assert_eq!(ops(&t, 0), vec![Op::Maintainer("Jane Doe <j@x>".into())]);
    let e = fail("FROM alpine\nFROB x\n");
    assert!(e[0].message.contains("FROB"), "{e:?}");
}

#[test]
fn workdir_defaults_and_image_config() {
    let t = ok("FROM golang:1.22\nWORKDIR rel\nFROM scratch\nWORKDIR rel\n");
    assert_eq!(ops(&t, 0), vec![Op::Workdir("/go/rel".into())]);
    assert_eq!(ops(&t, 1), vec![Op::Workdir("/rel".into())]);
}

#[test]
fn several_errors_are_reported() {
    let e = fail("FROM alpine\nCOPY --nope a b\nEXPOSE http\n");
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].line, 2);
    assert_eq!(e[1].line, 3);
    assert!(e[1].message.contains("invalid containerPort"));
}

#[test]
fn check_directive() {
    let t = ok("# check=skip=StageNameCasing\nFROM alpine AS Build\n");
    assert!(
        t.warnings
            .iter()
            .all(|w| !w.message.contains("StageNameCasing"))
    );
    let e = fail("# check=error=true\nFROM alpine as build\n");
    assert!(e[0].message.contains("FromAsCasing"));
    assert_eq!(e[0].line, 2);
}

#[test]
fn no_panic_on_odd_input() {
    for src in [
        "",
        "FROM",
        "FROM alpine\nCOPY",
        "FROM alpine\nRUN",
        "FROM alpine\nENV",
        "FROM alpine\nHEALTHCHECK",
        "FROM alpine\nWORKDIR ${",
        "FROM alpine\nRUN --mount=,,,= x",
        "FROM alpine\nEXPOSE 1-",
        "FROM alpine\nCOPY --from= a b",
        "ARG\nFROM x",
    ] {
        let _ = translate(&input(src, &[], None), &FakeHost::new());
    }
}

#[test]
fn parse_errors_become_diagnostics() {
    let e = fail("FROM alpine\nRUN [\"unterminated\"\nCOPY <<EOF /x\nno end\n");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].file, "Dockerfile");
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("heredoc"));
}

#[test]
fn escape_directive() {
    let t = ok("# escape=`\nFROM alpine\nENV A=`$HOME B=x`\ny\n");
    assert_eq!(env_op(&t, 0, 0), vec![kv("A", "$HOME"), kv("B", "xy")]);
}
