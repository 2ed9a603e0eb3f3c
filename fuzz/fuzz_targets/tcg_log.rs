#![no_main]
// The property is hearth_fuzzing::tcg_log (see there); scripts/fuzz runs it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth_fuzzing::tcg_log::run(data));
