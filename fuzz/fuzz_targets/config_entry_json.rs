//! cargo fuzz target `config_entry_json`: see fuzz/README.md and [`isthmus_fuzz::config_entry_json`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| isthmus_fuzz::config_entry_json(data));
