//! The solver: which stages run, in what order and how many at once ([`run_stages`]), the cache
//! key of each step ([`op_cache_key`]) and the step-cache protocol that finds and records a
//! step's result ([`StepCache`]). It works on the validated IR only; executing a step is the
//! builder's business.

mod keys;
mod schedule;
mod step_cache;

pub use keys::{StepInputs, linked_key, op_cache_key, stage_base_key};
pub use schedule::run_stages;
pub(crate) use step_cache::{
    CacheRecord, LayerRef, STEP_LOCK_PREFIX, StepCache, cache_record_layer,
};
