#![no_main]
// The property is hearth_fuzzing::audit_log (see there); scripts/fuzz runs it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth_fuzzing::audit_log::run(data));
