//! `INCLUDE` through the compiler: fragments spliced in place (stages, ARGs, blocks, nested
//! includes), paths relative to the including file and expanded like a FROM line, ops and
//! diagnostics that name the fragment and the chain of lines that included it, and the errors:
//! a cycle, nesting deeper than 32, a missing fragment, a path out of the context. An INCLUDE in
//! a branch not taken is never read.

mod common;

use common::{FilesHost, ext_with, plain};
use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types::{
    Diagnostic, Location, Op, Translation,
};
use wbuild_frontend_dockerfile::compile::MAX_INCLUDE_DEPTH;

fn ok(src: &str, args: &[(&str, &str)], host: &FilesHost) -> Translation {
    ext_with(src, args, host).unwrap_or_else(|e| panic!("unexpected errors: {e:#?}"))
}

fn fail(src: &str, args: &[(&str, &str)], host: &FilesHost) -> Vec<Diagnostic> {
    match ext_with(src, args, host) {
        Ok(t) => panic!("expected an error, got {:#?}", t.graph),
        Err(e) => e,
    }
}

/// Every RUN of every stage, as (shell line, file index, line).
fn runs(t: &Translation) -> Vec<(String, Option<u32>, u32)> {
    t.graph
        .stages
        .iter()
        .flat_map(|s| &s.ops)
        .filter_map(|o| match &o.op {
            Op::Run(r) => Some((r.args.last().cloned()?, o.span.file, o.span.line)),
            _ => None,
        })
        .collect()
}

fn at(file: &str, line: u32, column: u32) -> Location {
    Location {
        file: file.into(),
        line,
        column,
    }
}

#[test]
fn a_fragment_is_spliced_in_place_and_its_ops_name_it() {
    let host = FilesHost::new(&[("steps.Dockerfile", "RUN a\n\nRUN b\n")]);
    let t = ok(
        "FROM busybox\nINCLUDE steps.Dockerfile\nRUN last\n",
        &[],
        &host,
    );
    assert_eq!(
        runs(&t),
        [
            ("a".into(), Some(0), 1),
            ("b".into(), Some(0), 3),
            ("last".into(), None, 3)
        ]
    );
    assert_eq!(t.graph.files.len(), 1);
    let f = &t.graph.files[0];
    assert_eq!(f.name, "steps.Dockerfile");
    assert_eq!(f.text, "RUN a\n\nRUN b\n");
    assert_eq!(f.included_from, [at("Dockerfile", 2, 1)]);

    // The ops are those of the same instructions written inline; only spans differ.
    let inline = plain("FROM busybox\nRUN a\nRUN b\nRUN last\n", &[]).unwrap();
    let ops = |t: &Translation| -> Vec<Op> {
        t.graph.stages[0].ops.iter().map(|o| o.op.clone()).collect()
    };
    assert_eq!(ops(&t), ops(&inline));
}

#[test]
fn fragments_hold_stages_args_blocks_and_nested_includes() {
    let host = FilesHost::new(&[
        (
            "ci/stages.Dockerfile",
            "ARG MODE=fast\nFROM busybox AS build\nIF $MODE == fast\nINCLUDE common/fast\nELSE\nINCLUDE ../slow\nDONE\n",
        ),
        ("ci/common/fast", "RUN echo fast\n"),
        ("slow", "RUN echo slow\n"),
    ]);
    let src = "INCLUDE ci/stages.Dockerfile\nFROM build\nRUN echo final\n";
    let t = ok(src, &[], &host);
    assert_eq!(t.graph.stages.len(), 2);
    assert_eq!(t.graph.stages[0].name.as_deref(), Some("build"));
    assert_eq!(t.graph.stages[0].span.file, Some(0));
    assert_eq!(t.graph.stages[1].span.file, None);
    assert_eq!(
        runs(&t),
        [
            ("echo fast".into(), Some(1), 1),
            ("echo final".into(), None, 3)
        ]
    );
    assert_eq!(
        t.graph.files[1].included_from,
        [at("ci/stages.Dockerfile", 4, 1), at("Dockerfile", 1, 1)]
    );
    // The untaken branch's fragment was not read.
    assert_eq!(
        *host.reads.borrow(),
        ["ci/stages.Dockerfile", "ci/common/fast"]
    );

    let t = ok(src, &[("MODE", "slow")], &host);
    assert_eq!(runs(&t)[0].0, "echo slow");
    assert_eq!(t.graph.files[1].name, "slow");
}

#[test]
fn the_path_is_expanded_like_a_from_line() {
    let host = FilesHost::new(&[
        ("alpine.Dockerfile", "FROM alpine\n"),
        ("debian.Dockerfile", "FROM debian\n"),
    ]);
    let src = "ARG FLAVOUR=alpine\nINCLUDE ${FLAVOUR}.Dockerfile\nRUN true\n";
    let base = |t: &Translation| format!("{:?}", t.graph.stages[0].base);
    assert!(base(&ok(src, &[], &host)).contains("alpine"));
    assert!(base(&ok(src, &[("FLAVOUR", "debian")], &host)).contains("debian"));
    // Quotes work as on a FROM line.
    let t = ok("INCLUDE \"debian.Dockerfile\"\n", &[], &host);
    assert!(base(&t).contains("debian"));
}

#[test]
fn an_include_in_a_branch_not_taken_is_never_read() {
    let host = FilesHost::new(&[]);
    let src =
        "ARG X=0\nFROM busybox\nIF $X == 1\nINCLUDE does-not-exist.Dockerfile\nDONE\nRUN ok\n";
    let t = ok(src, &[], &host);
    assert_eq!(runs(&t), [("ok".into(), None, 6)]);
    assert!(host.reads.borrow().is_empty());
    // Taken, it is read, and its absence is an error.
    let e = fail(src, &[("X", "1")], &host);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].file.as_str(), e[0].line), ("Dockerfile", 4));
}

#[test]
fn errors_in_a_fragment_point_into_it_and_say_where_it_was_included() {
    let host = FilesHost::new(&[
        ("a.Dockerfile", "RUN ok\nINCLUDE sub/b.Dockerfile\n"),
        ("sub/b.Dockerfile", "# a comment\n  COPY --bogus x /y\n"),
    ]);
    let e = fail("FROM busybox\n\nINCLUDE a.Dockerfile\n", &[], &host);
    assert_eq!(e.len(), 1, "{e:#?}");
    let d = &e[0];
    assert_eq!(
        (d.file.as_str(), d.line, d.column),
        ("sub/b.Dockerfile", 2, 8)
    );
    assert_eq!(d.text, "--bogus");
    assert_eq!(
        d.included_from,
        [at("a.Dockerfile", 2, 1), at("Dockerfile", 3, 1)]
    );

    // Block and condition errors, and parse errors, as well.
    let host = FilesHost::new(&[
        ("blocks", "IF $A == 1\nRUN x\n"),
        ("cond", "IF $A = 1\nDONE\n"),
        ("parse", "RUN <<EOF\nnever ends\n"),
    ]);
    for (name, line, what) in [
        ("blocks", 1, "IF without DONE"),
        ("cond", 1, "bad condition"),
        ("parse", 1, ""),
    ] {
        let e = fail(&format!("FROM busybox\nINCLUDE {name}\n"), &[], &host);
        assert_eq!(e[0].file, name, "{e:#?}");
        assert_eq!(e[0].line, line, "{e:#?}");
        assert!(e[0].message.contains(what), "{e:#?}");
        assert_eq!(e[0].included_from, [at("Dockerfile", 2, 1)]);
    }
}

#[test]
fn a_missing_fragment_names_the_path_and_the_including_line() {
    let host = FilesHost::new(&[("ci/a", "INCLUDE nope.Dockerfile\n")]);
    let e = fail("FROM busybox\nINCLUDE ci/a\n", &[], &host);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].file.as_str(), e[0].line, e[0].column), ("ci/a", 1, 9));
    assert!(
        e[0].message
            .contains("cannot read the fragment ci/nope.Dockerfile"),
        "{e:#?}"
    );
    assert_eq!(e[0].text, "nope.Dockerfile");
    assert_eq!(e[0].included_from, [at("Dockerfile", 2, 1)]);

    let e = fail("FROM busybox\nINCLUDE ../outside\n", &[], &host);
    assert!(
        e[0].message.contains("leads outside the build context"),
        "{e:#?}"
    );
    let e = fail("FROM busybox\nINCLUDE\n", &[], &host);
    assert!(e[0].message.contains("requires the path"), "{e:#?}");
    let e = fail("FROM busybox\nINCLUDE a b\n", &[], &host);
    assert!(e[0].message.contains("exactly one path"), "{e:#?}");
}

#[test]
fn a_cycle_is_an_error_naming_the_chain() {
    let host = FilesHost::new(&[
        ("a", "RUN a\nINCLUDE b\n"),
        ("b", "INCLUDE a\n"),
        ("self", "INCLUDE ./self\n"),
        ("back", "INCLUDE Dockerfile\n"),
    ]);
    let e = fail("FROM busybox\nINCLUDE a\n", &[], &host);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].file.as_str(), e[0].line), ("b", 1));
    assert!(
        e[0].message
            .contains("INCLUDE cycle: Dockerfile -> a -> b -> a"),
        "{e:#?}"
    );
    let e = fail("FROM busybox\nINCLUDE self\n", &[], &host);
    assert!(e[0].message.contains("self -> self"), "{e:#?}");
    // The build file itself is part of the chain.
    let e = fail("FROM busybox\nINCLUDE back\n", &[], &host);
    assert!(
        e[0].message.contains("Dockerfile -> back -> Dockerfile"),
        "{e:#?}"
    );
    // Including the same fragment twice, one after the other, is no cycle.
    let host = FilesHost::new(&[("r", "RUN r\n")]);
    let t = ok("FROM busybox\nINCLUDE r\nINCLUDE r\n", &[], &host);
    assert_eq!(runs(&t).len(), 2);
    assert_eq!(t.graph.files.len(), 2);
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error() {
    let names: Vec<String> = (0..=MAX_INCLUDE_DEPTH + 1)
        .map(|i| format!("f{i}"))
        .collect();
    let texts: Vec<String> = (0..=MAX_INCLUDE_DEPTH + 1)
        .map(|i| format!("RUN {i}\nINCLUDE f{}\n", i + 1))
        .collect();
    let files: Vec<(&str, &str)> = names
        .iter()
        .zip(&texts)
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let host = FilesHost::new(&files);
    let e = fail("FROM busybox\nINCLUDE f0\n", &[], &host);
    assert_eq!(e.len(), 1, "{e:#?}");
    let d = &e[0];
    assert_eq!(d.file, format!("f{}", MAX_INCLUDE_DEPTH - 1));
    assert!(d.message.contains("deeper than 32 files"), "{d:#?}");
    assert!(d.message.contains("Dockerfile -> f0 -> f1 -> "), "{d:#?}");
    assert_eq!(d.included_from.len(), MAX_INCLUDE_DEPTH);

    // Exactly the limit is fine.
    let mut files = files.clone();
    let last = format!("RUN {}\n", MAX_INCLUDE_DEPTH - 1);
    files[MAX_INCLUDE_DEPTH - 1].1 = &last;
    let host = FilesHost::new(&files);
    let t = ok("FROM busybox\nINCLUDE f0\n", &[], &host);
    assert_eq!(runs(&t).len(), MAX_INCLUDE_DEPTH);
}

#[test]
fn the_dockerfile_frontend_has_no_include() {
    let e = plain("FROM busybox\nINCLUDE x\n", &[]).unwrap_err();
    assert!(
        e[0].message.contains("unknown instruction: INCLUDE"),
        "{e:#?}"
    );
}
