#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sbc_proto::fuzzing::parties(data));
