//! The stage graph between frontend and solver: validation of what a frontend returned, and
//! pruning to the stages the target needs. Every frontend gets both for free.

pub mod origin;
mod plan;

pub use plan::Plan;

use crate::ir::{Base, Graph, Mount, Op, Source, Stage};

/// Bounds on what a frontend may return; anything larger is a broken or hostile frontend.
pub const MAX_STAGES: usize = 10_000;
pub const MAX_OPS: usize = 1_000_000;
/// Largest graph, measured as its JSON text (every string, argument and inline file counted).
pub const MAX_GRAPH_BYTES: usize = 64 << 20;
/// Longest stage name.
pub const MAX_NAME_BYTES: usize = 1024;

/// A graph the solver can trust: every stage reference points backwards, the target exists.
#[derive(Debug, thiserror::Error)]
pub enum InvalidGraph {
    #[error("the frontend returned no stages")]
    Empty,
    #[error("the frontend returned {0} stages; at most {MAX_STAGES} are allowed")]
    TooManyStages(usize),
    #[error("the frontend returned {0} ops; at most {MAX_OPS} are allowed")]
    TooManyOps(usize),
    #[error("target stage {target} does not exist (the graph has {stages} stages)")]
    BadTarget { target: u32, stages: usize },
    #[error(
        "stage {stage} (line {line}) refers to stage {to}, which is not an earlier stage: \
         a stage may only use stages before it"
    )]
    ForwardReference { stage: usize, line: u32, to: u32 },
    #[error(
        "stage {stage} (line {line}) has a name of {bytes} bytes; at most {MAX_NAME_BYTES} are \
         allowed"
    )]
    NameTooLong {
        stage: usize,
        line: u32,
        bytes: usize,
    },
    #[error("the graph is larger than {} MiB", MAX_GRAPH_BYTES >> 20)]
    TooLarge,
    #[error(
        "stage {stage} names source file {file}, which is not in the graph's files (it has \
         {files})"
    )]
    BadFile {
        stage: usize,
        file: u32,
        files: usize,
    },
}

/// Counts bytes written and fails once there are more than `limit`.
struct SizeLimit {
    written: usize,
    limit: usize,
}

impl std::io::Write for SizeLimit {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("over the limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the graph's JSON form is larger than `limit` bytes (stops writing at the limit).
fn larger_than(graph: &Graph, limit: usize) -> bool {
    let mut w = SizeLimit { written: 0, limit };
    serde_json::to_writer(&mut w, graph).is_err()
}

/// The stages `stage` depends on directly (base, copy sources, mount sources), in order, once.
pub fn stage_deps(stage: &Stage) -> Vec<u32> {
    let mut deps = Vec::new();
    let mut add = |i: u32| {
        if !deps.contains(&i) {
            deps.push(i)
        }
    };
    if let Base::Stage(i) = stage.base {
        add(i);
    }
    for node in &stage.ops {
        match &node.op {
            Op::Copy(c) => {
                if let Source::Stage(i) = c.from {
                    add(i);
                }
            }
            Op::Run(r) => {
                for m in &r.mounts {
                    let from = match m {
                        Mount::Bind(b) => Some(&b.from),
                        Mount::Cache(c) => c.from.as_ref(),
                        _ => None,
                    };
                    if let Some(Source::Stage(i)) = from {
                        add(*i);
                    }
                }
            }
            _ => {}
        }
    }
    deps
}

/// Check a graph from a frontend before anything runs it.
pub fn validate(graph: &Graph) -> Result<(), InvalidGraph> {
    if graph.stages.is_empty() {
        return Err(InvalidGraph::Empty);
    }
    if graph.stages.len() > MAX_STAGES {
        return Err(InvalidGraph::TooManyStages(graph.stages.len()));
    }
    let ops: usize = graph.stages.iter().map(|s| s.ops.len()).sum();
    if ops > MAX_OPS {
        return Err(InvalidGraph::TooManyOps(ops));
    }
    if graph.target as usize >= graph.stages.len() {
        return Err(InvalidGraph::BadTarget {
            target: graph.target,
            stages: graph.stages.len(),
        });
    }
    for (i, stage) in graph.stages.iter().enumerate() {
        if let Some(name) = &stage.name
            && name.len() > MAX_NAME_BYTES
        {
            return Err(InvalidGraph::NameTooLong {
                stage: i,
                line: stage.span.line,
                bytes: name.len(),
            });
        }
    }
    if larger_than(graph, MAX_GRAPH_BYTES) {
        return Err(InvalidGraph::TooLarge);
    }
    if let Some((stage, file)) = origin::bad_file(graph) {
        return Err(InvalidGraph::BadFile {
            stage,
            file,
            files: graph.files.len(),
        });
    }
    for (i, stage) in graph.stages.iter().enumerate() {
        if let Some(&to) = stage_deps(stage).iter().find(|&&d| d as usize >= i) {
            return Err(InvalidGraph::ForwardReference {
                stage: i,
                line: stage.span.line,
                to,
            });
        }
    }
    Ok(())
}

/// The stages reachable from the target, ascending. Stages not in it never run.
pub fn reachable(graph: &Graph) -> Vec<u32> {
    let mut needed = vec![false; graph.stages.len()];
    let mut todo = vec![graph.target];
    while let Some(i) = todo.pop() {
        if std::mem::replace(&mut needed[i as usize], true) {
            continue;
        }
        todo.extend(stage_deps(&graph.stages[i as usize]));
    }
    (0..graph.stages.len() as u32)
        .filter(|&i| needed[i as usize])
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders of small IR graphs for the host's unit tests.
    use super::*;
    use crate::ir::{CopyOp, ImageRef, OpNode, Span};

    pub fn span(line: u32) -> Span {
        Span {
            line,
            column: 1,
            end_line: line,
            end_column: 1,
            file: None,
        }
    }

    /// One scratch stage with one op.
    pub fn graph_of_one_stage() -> Graph {
        Graph {
            stages: vec![stage(Base::Scratch, &[0])],
            target: 0,
            files: vec![],
        }
    }

    pub fn stage(base: Base, copy_from: &[u32]) -> Stage {
        Stage {
            name: None,
            base,
            platform: None,
            ops: copy_from
                .iter()
                .map(|&i| OpNode {
                    op: Op::Copy(CopyOp {
                        from: Source::Stage(i),
                        sources: vec![],
                        dest: "/".into(),
                        chown: None,
                        chmod: None,
                        link: false,
                        parents: false,
                        excludes: vec![],
                        add: None,
                    }),
                    span: span(1),
                    text: String::new(),
                })
                .collect(),
            span: span(1),
            text: String::new(),
        }
    }

    pub fn image() -> Base {
        Base::Image(ImageRef {
            reference: "busybox".into(),
            platform: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{image, stage};
    use super::*;

    #[test]
    fn prunes_to_what_the_target_reaches() {
        let g = Graph {
            stages: vec![
                stage(image(), &[]),
                stage(Base::Scratch, &[]),
                stage(Base::Stage(0), &[]),
                stage(image(), &[2, 0]),
            ],
            target: 3,
            files: vec![],
        };
        validate(&g).unwrap();
        assert_eq!(reachable(&g), vec![0, 2, 3]);
        assert_eq!(stage_deps(&g.stages[3]), vec![2, 0]);
        let g = Graph { target: 1, ..g };
        assert_eq!(reachable(&g), vec![1]);
    }

    #[test]
    fn rejects_broken_graphs() {
        let empty = Graph {
            stages: vec![],
            target: 0,
            files: vec![],
        };
        assert!(matches!(validate(&empty), Err(InvalidGraph::Empty)));
        let bad_target = Graph {
            stages: vec![stage(image(), &[])],
            target: 1,
            files: vec![],
        };
        assert!(matches!(
            validate(&bad_target),
            Err(InvalidGraph::BadTarget { .. })
        ));
        // A cycle needs a forward (or self) reference, so both are refused.
        for g in [
            Graph {
                stages: vec![stage(Base::Stage(0), &[])],
                target: 0,
                files: vec![],
            },
            Graph {
                stages: vec![stage(image(), &[1]), stage(Base::Stage(0), &[])],
                target: 1,
                files: vec![],
            },
            Graph {
                stages: vec![stage(image(), &[u32::MAX])],
                target: 0,
                files: vec![],
            },
        ] {
            let err = validate(&g).unwrap_err();
            assert!(
                matches!(err, InvalidGraph::ForwardReference { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("earlier stage"), "{err}");
        }
        let huge = Graph {
            stages: (0..MAX_STAGES + 1)
                .map(|_| stage(Base::Scratch, &[]))
                .collect(),
            target: 0,
            files: vec![],
        };
        assert!(matches!(
            validate(&huge),
            Err(InvalidGraph::TooManyStages(_))
        ));
        let mut named = stage(Base::Scratch, &[]);
        named.name = Some("n".repeat(MAX_NAME_BYTES + 1));
        let long_name = Graph {
            stages: vec![named],
            target: 0,
            files: vec![],
        };
        assert!(matches!(
            validate(&long_name),
            Err(InvalidGraph::NameTooLong { .. })
        ));
        let mut big = stage(Base::Scratch, &[]);
        big.ops = (0..70)
            .map(|_| crate::ir::OpNode {
                op: Op::Workdir(format!("/{}", "d".repeat(1 << 20))),
                span: super::testing::span(2),
                text: String::new(),
            })
            .collect();
        let too_big = Graph {
            stages: vec![big],
            target: 0,
            files: vec![],
        };
        assert!(matches!(validate(&too_big), Err(InvalidGraph::TooLarge)));
    }
}
