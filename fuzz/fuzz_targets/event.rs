#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| telemetry_core::fuzzing::event(data));
