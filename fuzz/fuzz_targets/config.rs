//! Fuzz target `config`: its body is `tutord::fuzzing::config`, which tests/fuzz_regressions.rs
//! also runs over the committed seeds and crash inputs.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tutord::fuzzing::config(data);
});
