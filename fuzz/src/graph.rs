//! Fuzz entry point for the host's handling of a frontend's stage graph: validation, pruning,
//! plan output, cache keys and the stage scheduler. Also compiled into `tests/fuzz_corpus.rs`.

use wbuild::ir;

/// Reads small numbers from the fuzz input; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn index(&mut self) -> u32 {
        match self.byte() {
            255 => u32::MAX,
            254 => u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]),
            b => u32::from(b % 32),
        }
    }

    fn string(&mut self) -> String {
        let n = usize::from(self.byte() % 8);
        (0..n)
            .map(|_| char::from(b'!' + self.byte() % 90))
            .collect()
    }

    fn source(&mut self) -> ir::Source {
        match self.byte() % 3 {
            0 => ir::Source::Context,
            1 => ir::Source::Stage(self.index()),
            _ => ir::Source::Image(ir::ImageRef {
                reference: self.string(),
                platform: None,
            }),
        }
    }
}

fn span(line: u32) -> ir::Span {
    ir::Span {
        line,
        column: 1,
        end_line: line,
        end_column: 1,
        file: None,
    }
}

fn op(b: &mut Bytes) -> ir::Op {
    match b.byte() % 5 {
        0 => ir::Op::Copy(ir::CopyOp {
            from: b.source(),
            sources: vec![ir::CopySource::Path(b.string())],
            dest: format!("/{}", b.string()),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            excludes: vec![],
            add: None,
        }),
        1 => {
            let mounts = (0..b.byte() % 3)
                .map(|_| {
                    ir::Mount::Bind(ir::BindMount {
                        target: format!("/{}", b.string()),
                        from: b.source(),
                        source_path: "/".into(),
                        readwrite: false,
                    })
                })
                .collect();
            ir::Op::Run(ir::RunOp {
                args: vec!["/bin/sh".into(), "-c".into(), b.string()],
                extra_env: vec![],
                network: ir::Network::None,
                security: ir::Security::Sandbox,
                mounts,
            })
        }
        2 => ir::Op::Workdir(format!("/{}", b.string())),
        3 => ir::Op::Env(vec![ir::KeyValue {
            key: b.string(),
            value: b.string(),
        }]),
        _ => ir::Op::Cmd(Some(vec![b.string()])),
    }
}

/// Decodes a stage graph from the bytes (stage count, bases, ops with stage references that may
/// point anywhere, target) and runs what the host does with a frontend's graph: validation,
/// and for a valid graph pruning, the plan output, cache keys and the stage scheduler.
pub fn graph(data: &[u8]) {
    let mut b = Bytes(data);
    let n = usize::from(b.byte() % 24);
    let stages: Vec<ir::Stage> = (0..n)
        .map(|i| {
            let base = match b.byte() % 3 {
                0 => ir::Base::Scratch,
                1 => ir::Base::Stage(b.index()),
                _ => ir::Base::Image(ir::ImageRef {
                    reference: b.string(),
                    platform: None,
                }),
            };
            let ops = (0..b.byte() % 6)
                .map(|_| ir::OpNode {
                    op: op(&mut b),
                    span: span(i as u32 + 1),
                    text: String::new(),
                })
                .collect();
            ir::Stage {
                name: (b.byte() % 2 == 0).then(|| b.string()),
                base,
                platform: None,
                ops,
                span: span(i as u32 + 1),
                text: String::new(),
            }
        })
        .collect();
    let graph = ir::Graph {
        stages,
        target: b.index(),
        files: vec![],
    };
    let valid = wbuild::validate_graph(&graph);
    // The validator's promise: a valid graph has a target and only backward references.
    let ok_by_hand = !graph.stages.is_empty()
        && (graph.target as usize) < graph.stages.len()
        && graph
            .stages
            .iter()
            .enumerate()
            .all(|(i, s)| wbuild::stage_deps(s).iter().all(|&d| (d as usize) < i));
    assert_eq!(valid.is_ok(), ok_by_hand, "validate disagrees: {valid:?}");
    if valid.is_err() {
        return;
    }
    let reach = wbuild::reachable_stages(&graph);
    assert!(reach.contains(&graph.target));
    let plan = wbuild::Plan::new("Dockerfile", "fuzz", &graph, &[]);
    let _ = plan.to_json();
    let _ = plan.to_dot();
    let platform = ir::Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    let ran = std::sync::Mutex::new(Vec::new());
    let results = wbuild::run_stages(&graph, 1 + usize::from(b.byte() % 3), |i, deps| {
        let stage = &graph.stages[i as usize];
        for d in wbuild::stage_deps(stage) {
            assert!(
                deps.contains_key(&d),
                "stage {i} ran before its dependency {d}"
            );
        }
        let mut key = wbuild::stage_base_key(&stage.base, None, &platform);
        for node in &stage.ops {
            key = wbuild::op_cache_key(&key, &node.op, &Default::default());
        }
        ran.lock().unwrap().push(i);
        Ok(key)
    })
    .expect("no stage fails");
    let mut ran = ran.into_inner().unwrap();
    ran.sort();
    assert_eq!(
        ran, reach,
        "the scheduler ran other stages than the target needs"
    );
    assert_eq!(results.len(), reach.len());
}
