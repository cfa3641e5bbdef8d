//! cargo fuzz target `duration`: see fuzz/README.md and [`isthmus_fuzz::duration`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::duration(data));
