//! The extended syntax end to end through the compiler: which branch is compiled, what a
//! condition sees, and where errors point. The IR never holds a condition, so the tests look
//! at the plain IR the chosen branch gives.

mod common;

use common::{ext, plain};
use wbuild_frontend_dockerfile::bindings::wbuild::frontend::types::{
    Base, Diagnostic, Op, Translation,
};

fn ok(src: &str, args: &[(&str, &str)]) -> Translation {
    ext(src, args).unwrap_or_else(|e| panic!("unexpected errors: {e:#?}"))
}

fn fail(src: &str, args: &[(&str, &str)]) -> Vec<Diagnostic> {
    match ext(src, args) {
        Ok(t) => panic!("expected an error, got {:#?}", t.graph),
        Err(e) => e,
    }
}

/// The shell lines of a stage's RUN ops.
fn runs(t: &Translation, stage: usize) -> Vec<String> {
    t.graph.stages[stage]
        .ops
        .iter()
        .filter_map(|o| match &o.op {
            Op::Run(r) => r.args.last().cloned(),
            _ => None,
        })
        .collect()
}

const VERSIONS: &str = "\
ARG BUILD_VERSION=1
FROM busybox
ARG BUILD_VERSION
IF $BUILD_VERSION==1
RUN touch version1
ELSE IF $BUILD_VERSION == 2
RUN touch version2
ELSE
RUN touch other
DONE
RUN ls
";

#[test]
fn the_chosen_branch_is_plain_ir() {
    let t = ok(VERSIONS, &[]);
    assert_eq!(runs(&t, 0), ["touch version1", "ls"]);
    let t = ok(VERSIONS, &[("BUILD_VERSION", "2")]);
    assert_eq!(runs(&t, 0), ["touch version2", "ls"]);
    let t = ok(VERSIONS, &[("BUILD_VERSION", "3")]);
    assert_eq!(runs(&t, 0), ["touch other", "ls"]);
    // Exactly what the plain Dockerfile with that branch gives.
    let same = plain(
        "ARG BUILD_VERSION=1\nFROM busybox\nARG BUILD_VERSION\n\n\n\n\n\nRUN touch other\n\nRUN ls\n",
        &[("BUILD_VERSION", "3")],
    )
    .unwrap();
    assert_eq!(t, same);
}

#[test]
fn blocks_choose_between_stages_on_a_global_arg() {
    let src = "\
ARG FLAVOUR=small
IF $FLAVOUR == small
FROM busybox AS base
ELSE
FROM golang:1.22 AS base
RUN go version
DONE
RUN echo built
FROM base AS final
";
    let t = ok(src, &[]);
    assert_eq!(t.graph.stages.len(), 2);
    assert!(matches!(&t.graph.stages[0].base, Base::Image(r) if r.reference == "busybox"));
    assert_eq!(runs(&t, 0), ["echo built"]);
    assert_eq!(t.graph.stages[1].base, Base::Stage(0));
    let t = ok(src, &[("FLAVOUR", "big")]);
    assert!(matches!(&t.graph.stages[0].base, Base::Image(r) if r.reference == "golang:1.22"));
    assert_eq!(runs(&t, 0), ["go version", "echo built"]);
}

#[test]
fn blocks_before_the_first_from_around_args() {
    let src = "\
ARG MODE=dev
IF $MODE == prod
ARG BASE=busybox:stable
ELSE
ARG BASE=busybox:latest
DONE
FROM $BASE
";
    let base = |t: &Translation| match &t.graph.stages[0].base {
        Base::Image(r) => r.reference.clone(),
        b => panic!("{b:?}"),
    };
    assert_eq!(base(&ok(src, &[])), "busybox:latest");
    assert_eq!(base(&ok(src, &[("MODE", "prod")])), "busybox:stable");
    // Only ARG may come before the first FROM, inside a block too.
    let e = fail("IF 1 == 1\nRUN x\nDONE\nFROM a\n", &[]);
    assert_eq!(e[0].line, 2);
    assert!(e[0].message.contains("before the first FROM"), "{e:?}");
}

#[test]
fn conditions_see_stage_env_base_image_env_and_args() {
    let src = "\
FROM golang:1.22
IF defined(GOPATH) && $GOPATH == /go
RUN echo from-image-env
DONE
ENV MODE=fast
IF ${MODE:-slow} == fast
RUN echo from-env
DONE
ARG LEVEL
IF defined(LEVEL)
RUN echo level-set
ELSE
RUN echo level-unset
DONE
";
    assert_eq!(
        runs(&ok(src, &[]), 0),
        ["echo from-image-env", "echo from-env", "echo level-unset"]
    );
    assert_eq!(
        runs(&ok(src, &[("LEVEL", "")]), 0),
        ["echo from-image-env", "echo from-env", "echo level-set"]
    );
    // A stage ARG shadows the global one; ENV shadows both.
    let src = "\
ARG V=global
FROM busybox
IF $V == global
RUN echo sees-global
DONE
ARG V=stage
IF $V == stage
RUN echo sees-stage
DONE
ENV V=env
IF $V == env
RUN echo sees-env
DONE
";
    assert_eq!(
        runs(&ok(src, &[]), 0),
        ["echo sees-global", "echo sees-stage", "echo sees-env"]
    );
}

#[test]
fn nested_blocks_and_onbuild() {
    let src = "\
ARG A=1
ARG B=2
FROM busybox
IF $A == 1
  IF $B == 1
    RUN echo a1b1
  ELSE
    ONBUILD RUN echo a1-not-b1
  DONE
ELSE
  RUN echo not-a1
END
";
    let t = ok(src, &[]);
    let ops: Vec<&Op> = t.graph.stages[0].ops.iter().map(|o| &o.op).collect();
    assert_eq!(ops, [&Op::Onbuild("RUN echo a1-not-b1".into())]);
    let t = ok(src, &[("B", "1")]);
    assert_eq!(runs(&t, 0), ["echo a1b1"]);
    let t = ok(src, &[("A", "0")]);
    assert_eq!(runs(&t, 0), ["echo not-a1"]);
}

#[test]
fn untaken_branches_are_not_compiled() {
    // A branch that is not taken may name images that do not exist or misuse flags: only its
    // syntax is checked.
    let src = "\
FROM busybox
IF 1 == 2
RUN --bogus=1 x
COPY --from=missing / /
DONE
";
    assert!(ok(src, &[]).graph.stages[0].ops.is_empty());
    // Conditions after the chosen branch are not evaluated.
    let src = "FROM busybox\nIF 1 == 1\nRUN a\nELSE IF ${X:?boom} == 1\nRUN b\nDONE\n";
    assert_eq!(runs(&ok(src, &[]), 0), ["a"]);
    // Syntax errors count everywhere.
    let e = fail("FROM busybox\nIF 1 == 2\nFORM x\nDONE\n", &[]);
    assert_eq!(e[0].line, 3);
    assert!(e[0].message.contains("unknown instruction: FORM"), "{e:?}");
    let e = fail("FROM busybox\nIF 1 == 2\nELSE IF $X = 1\nDONE\n", &[]);
    assert_eq!((e[0].line, e[0].column), (3, 12));
}

#[test]
fn a_stage_in_an_untaken_branch_is_not_there() {
    let src = "\
ARG V=1
IF $V == 1
FROM busybox AS one
ELSE
FROM busybox AS two
DONE
FROM two
";
    let e = fail(src, &[]);
    assert_eq!((e[0].line, e[0].column), (7, 6));
    assert!(
        e[0].message
            .contains("stage \"two\" is defined (line 5) in a branch of a conditional block that was not taken"),
        "{e:?}"
    );
    let e = fail(
        &src.replace("FROM two", "FROM one\nCOPY --from=two / /"),
        &[("V", "1")],
    );
    assert!(
        e[0].message.contains("--from=two names stage \"two\""),
        "{e:?}"
    );
    assert_eq!(ok(src, &[("V", "2")]).graph.stages.len(), 2);
}

#[test]
fn evaluation_errors_point_at_the_word() {
    let src = "FROM busybox\nIF   ${NEEDED:?set NEEDED} == 1\nDONE\n";
    let e = fail(src, &[]);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].line, e[0].column, e[0].text.as_str()),
        (2, 6, "${NEEDED:?set NEEDED}")
    );
    assert!(e[0].message.contains("set NEEDED"), "{e:?}");
    assert_eq!(e[0].file, "Dockerfile");
}

#[test]
fn structure_errors_reach_the_caller() {
    let e = fail("FROM busybox\nIF 1 == 1\nRUN x\n", &[]);
    assert_eq!(
        (e[0].line, e[0].column, e[0].text.as_str()),
        (2, 1, "IF 1 == 1")
    );
    assert!(e[0].message.contains("IF without DONE"), "{e:?}");
    let e = fail("FROM busybox\nRUN x\n DONE\n", &[]);
    assert_eq!((e[0].line, e[0].column, e[0].text.as_str()), (3, 2, "DONE"));
    let e = fail("FROM busybox\nONBUILD IF 1 == 1\n", &[]);
    assert!(
        e[0].message
            .contains("IF isn't allowed as an ONBUILD trigger"),
        "{e:?}"
    );
}
