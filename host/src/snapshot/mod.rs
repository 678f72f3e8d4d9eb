//! Snapshots and layer diffs (being written).
