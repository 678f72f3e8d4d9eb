//! OCI image formats, import and export (being written).
