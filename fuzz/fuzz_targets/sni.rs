//! cargo fuzz target `sni`: see fuzz/README.md and [`isthmus_fuzz::sni`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::sni(data));
