#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trigpoll_fuzz::names(data));
