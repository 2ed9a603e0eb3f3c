#![no_main]
// The property is hearth_fuzzing::tpm_wire (see there); scripts/fuzz runs it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hearth_fuzzing::tpm_wire::run(data));
