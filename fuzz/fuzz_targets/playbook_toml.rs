#![no_main]
// The property is hearth_fuzzing::playbook_toml (see there); scripts/fuzz runs it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth_fuzzing::playbook_toml::run(data));
