#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| iot_rules::fuzzing::rule_sql(data));
