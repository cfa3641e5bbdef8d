//! cargo fuzz target `peering_token`: see fuzz/README.md and [`isthmus_fuzz::peering_token`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::peering_token(data));
