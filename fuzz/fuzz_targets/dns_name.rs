//! cargo fuzz target `dns_name`: see fuzz/README.md and [`isthmus_fuzz::dns_name`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::dns_name(data));
