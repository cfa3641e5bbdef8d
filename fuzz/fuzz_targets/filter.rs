//! cargo fuzz target `filter`: see fuzz/README.md and [`isthmus_fuzz::filter`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::filter(data));
