//! cargo fuzz target `http_path`: see fuzz/README.md and [`isthmus_fuzz::http_path`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::http_path(data));
