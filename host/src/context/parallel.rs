//! The one way the context reads in parallel: [`map`] runs a function over a slice on a few
//! threads that each take the next item as they finish one, and gives the results in the
//! slice's order (hashing a COPY's files, walking a source's subtrees).

use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` of every item of `items`, in order, on up to `threads` threads (on this one when
/// `threads` or the number of items is below 2).
pub(super) fn map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads < 2 || items.len() < 2 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = items.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return done;
                        };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        for w in workers {
            for (i, r) in w.join().expect("a context thread does not panic") {
                slots[i] = Some(r);
            }
        }
    });
    // Every index was taken by a thread.
    slots
        .into_iter()
        .map(|s| s.expect("every item is mapped"))
        .collect()
}
