//! cargo fuzz target `acl_rules`: see fuzz/README.md and [`isthmus_fuzz::acl_rules`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::acl_rules(data));
