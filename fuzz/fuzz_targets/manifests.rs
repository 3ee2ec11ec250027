#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kindload_fuzz::manifests(data));
