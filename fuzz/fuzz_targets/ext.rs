//! cargo-fuzz target: `wbuild_fuzz::ext` (see src/lib.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wbuild_fuzz::ext(data));
