//! Sandboxed RUN through runc (being written).
