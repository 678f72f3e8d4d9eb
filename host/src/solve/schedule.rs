//! Running the needed stages of a graph with bounded parallelism: a stage starts as soon as the
//! stages it depends on have finished, at most `jobs` run at once, and the first failure stops
//! new stages from starting (running ones finish; their results are kept for the cache).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

use crate::graph::{reachable, stage_deps};
use crate::ir::Graph;

/// The first stage that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("stage {index} failed: {error:#}")]
pub struct StageFailure {
    pub index: u32,
    #[source]
    pub error: anyhow::Error,
}

struct State<R> {
    done: HashMap<u32, R>,
    running: usize,
    started: Vec<bool>,
    failure: Option<StageFailure>,
}

/// Run `run(index, results_of_deps)` for every stage the target needs, dependencies first, up to
/// `jobs` at a time. Returns every stage's result, keyed by index, or the first failure.
pub fn run_stages<R, F>(graph: &Graph, jobs: usize, run: F) -> Result<HashMap<u32, R>, StageFailure>
where
    R: Clone + Send,
    F: Fn(u32, &HashMap<u32, R>) -> anyhow::Result<R> + Sync,
{
    let needed = reachable(graph);
    let deps: HashMap<u32, Vec<u32>> = needed
        .iter()
        .map(|&i| (i, stage_deps(&graph.stages[i as usize])))
        .collect();
    let state = Mutex::new(State::<R> {
        done: HashMap::new(),
        running: 0,
        started: vec![false; graph.stages.len()],
        failure: None,
    });
    let wake = Condvar::new();
    let jobs = jobs.max(1);

    std::thread::scope(|scope| {
        for _ in 0..jobs.min(needed.len()) {
            scope.spawn(|| {
                loop {
                    // Pick a ready stage, or stop when nothing is left to start.
                    let (index, inputs) = {
                        let mut st = state.lock().unwrap();
                        loop {
                            if st.failure.is_some() {
                                return;
                            }
                            let ready = needed.iter().copied().find(|&i| {
                                !st.started[i as usize]
                                    && deps[&i].iter().all(|d| st.done.contains_key(d))
                            });
                            if let Some(i) = ready {
                                st.started[i as usize] = true;
                                st.running += 1;
                                let inputs: HashMap<u32, R> =
                                    deps[&i].iter().map(|d| (*d, st.done[d].clone())).collect();
                                break (i, inputs);
                            }
                            if needed.iter().all(|&i| st.started[i as usize]) {
                                return;
                            }
                            st = wake.wait(st).unwrap();
                        }
                    };
                    let result = run(index, &inputs);
                    let mut st = state.lock().unwrap();
                    st.running -= 1;
                    match result {
                        Ok(r) => {
                            st.done.insert(index, r);
                        }
                        Err(error) => {
                            if st.failure.is_none() {
                                st.failure = Some(StageFailure { index, error });
                            }
                        }
                    }
                    wake.notify_all();
                }
            });
        }
    });
    let st = state.into_inner().unwrap();
    match st.failure {
        Some(f) => Err(f),
        None => Ok(st.done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::testing::{image, stage};
    use crate::ir::Base;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Stage i starts from an image or from stage `bases[i]`, and copies from `copies[i]`.
    fn graph(bases: &[Option<u32>], copies: &[&[u32]], target: u32) -> Graph {
        Graph {
            stages: bases
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let base = b.map_or_else(image, Base::Stage);
                    stage(base, copies.get(i).copied().unwrap_or(&[]))
                })
                .collect(),
            target,
            files: vec![],
        }
    }

    #[test]
    fn dependencies_first_and_unneeded_stages_never_run() {
        // 0 <- 2 <- 3, 1 unused.
        let g = graph(&[None, None, Some(0), Some(2)], &[], 3);
        let order = Mutex::new(Vec::new());
        let done = run_stages(&g, 4, |i, inputs| {
            order.lock().unwrap().push(i);
            // The result of a stage is visible to its dependents.
            let parent: u32 = inputs.values().sum();
            Ok(parent + i)
        })
        .unwrap();
        assert_eq!(*order.lock().unwrap(), vec![0, 2, 3]);
        assert_eq!(done[&3], 5);
        assert!(!done.contains_key(&1));
    }

    #[test]
    fn independent_stages_run_at_the_same_time_within_jobs() {
        // Stages 0 and 1 are independent; 2 starts from 0 and copies from 1.
        let g = graph(&[None, None, Some(0)], &[&[], &[], &[1]], 2);
        // Count how many stages run at once: each holds its slot long enough for any stage
        // that could start alongside it to do so.
        let max_running = |jobs: usize| {
            let running = AtomicUsize::new(0);
            let max = AtomicUsize::new(0);
            run_stages(&g, jobs, |_, _| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
            max.into_inner()
        };
        assert_eq!(max_running(2), 2, "stages 0 and 1 must overlap");
        assert_eq!(max_running(4), 2, "stage 2 waits for both");
        assert_eq!(max_running(1), 1, "--jobs 1 runs one stage at a time");
    }

    #[test]
    fn the_first_failure_stops_new_stages() {
        let g = graph(&[None, Some(0), Some(1)], &[], 2);
        let ran = Mutex::new(Vec::new());
        let err = run_stages(&g, 2, |i, _| {
            ran.lock().unwrap().push(i);
            if i == 1 {
                anyhow::bail!("RUN false: exit code 1")
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("exit code 1"));
        assert_eq!(*ran.lock().unwrap(), vec![0, 1]);
    }
}
