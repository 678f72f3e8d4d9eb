//! The solver: which stages run, in what order and how many at once, and the cache key of each
//! step. It works on the validated IR only; executing a step is the caller's business.

mod keys;
mod schedule;

pub use keys::{StepInputs, linked_key, op_cache_key, record_key, stage_base_key};
pub use schedule::{StageFailure, run_stages};
