//! cargo fuzz target `stream_framing`: see fuzz/README.md and [`isthmus_fuzz::stream_framing`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::stream_framing(data));
