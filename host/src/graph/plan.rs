//! `wbuild plan`: the pruned stage graph as JSON or Graphviz DOT.

use serde::Serialize;

use super::{reachable, stage_deps};
use crate::ir::{Base, Diagnostic, Graph, Mount, Op, Source, Stage};

/// A stage that will run, with its index in the frontend's graph.
#[derive(Serialize)]
pub struct PlanStage<'a> {
    pub index: u32,
    /// Stages this one needs first (base, `COPY --from`, mounts).
    pub depends_on: Vec<u32>,
    #[serde(flatten)]
    pub stage: &'a Stage,
}

/// What `wbuild plan` prints.
#[derive(Serialize)]
pub struct Plan<'a> {
    /// The build file and the frontend that read it.
    pub file: &'a str,
    /// The frontend, as `label (digest)`.
    pub frontend: &'a str,
    /// Index of the target stage.
    pub target: u32,
    /// The stages that run, in the order they may start.
    pub stages: Vec<PlanStage<'a>>,
    /// Stages of the file that the target does not need: they do not run.
    pub skipped: Vec<Skipped<'a>>,
    /// The frontend's warnings.
    pub warnings: &'a [Diagnostic],
}

#[derive(Serialize)]
pub struct Skipped<'a> {
    pub index: u32,
    pub name: Option<&'a str>,
}

impl<'a> Plan<'a> {
    /// The plan of `graph` (validated) as read from `file` by `frontend`.
    pub fn new(
        file: &'a str,
        frontend: &'a str,
        graph: &'a Graph,
        warnings: &'a [Diagnostic],
    ) -> Self {
        let keep = reachable(graph);
        let stages = keep
            .iter()
            .map(|&i| {
                let stage = &graph.stages[i as usize];
                PlanStage {
                    index: i,
                    depends_on: stage_deps(stage),
                    stage,
                }
            })
            .collect();
        let skipped = (0..graph.stages.len() as u32)
            .filter(|i| !keep.contains(i))
            .map(|i| Skipped {
                index: i,
                name: graph.stages[i as usize].name.as_deref(),
            })
            .collect();
        Plan {
            file,
            frontend,
            target: graph.target,
            stages,
            skipped,
            warnings,
        }
    }

    /// The plan as pretty-printed JSON (the format `wbuild plan` prints).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan serializes")
    }

    /// Graphviz: a box per stage (label: name and op count), an ellipse per image, an edge per
    /// dependency labelled with how it is used.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph build {\n  rankdir=LR;\n  node [shape=box];\n");
        let mut images: Vec<String> = Vec::new();
        for s in &self.stages {
            let label = match &s.stage.name {
                Some(n) => format!("{} ({n})", s.index),
                None => s.index.to_string(),
            };
            let style = if s.index == self.target {
                ", style=bold"
            } else {
                ""
            };
            out += &format!(
                "  s{} [label={}{style}];\n",
                s.index,
                quote(&format!("{label}\\n{} ops", s.stage.ops.len()))
            );
            let mut edge = |from: String, what: &str| {
                out += &format!("  {from} -> s{} [label={}];\n", s.index, quote(what));
            };
            match &s.stage.base {
                Base::Scratch => {}
                Base::Stage(i) => edge(format!("s{i}"), "FROM"),
                Base::Image(r) => {
                    edge(image_node(&mut images, &r.reference), "FROM");
                }
            }
            for node in &s.stage.ops {
                let (src, what) = match &node.op {
                    Op::Copy(c) => (Some(&c.from), "COPY"),
                    Op::Run(r) => {
                        for m in &r.mounts {
                            if let Mount::Bind(b) = m {
                                match &b.from {
                                    Source::Stage(i) => edge(format!("s{i}"), "mount"),
                                    Source::Image(r) => {
                                        edge(image_node(&mut images, &r.reference), "mount")
                                    }
                                    Source::Context => {}
                                }
                            }
                        }
                        (None, "")
                    }
                    _ => (None, ""),
                };
                match src {
                    Some(Source::Stage(i)) => edge(format!("s{i}"), what),
                    Some(Source::Image(r)) => edge(image_node(&mut images, &r.reference), what),
                    _ => {}
                }
            }
        }
        for (i, name) in images.iter().enumerate() {
            out += &format!("  i{i} [shape=ellipse, label={}];\n", quote(name));
        }
        out += "}\n";
        out
    }
}

fn image_node(images: &mut Vec<String>, reference: &str) -> String {
    let i = match images.iter().position(|r| r == reference) {
        Some(i) => i,
        None => {
            images.push(reference.to_string());
            images.len() - 1
        }
    };
    format!("i{i}")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}
