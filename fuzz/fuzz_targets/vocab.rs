//! faster-whisper's `vocabulary.txt`, as the converter reads it (whole, then as UTF-8).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tutord::voice::convert::vocab;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match vocab::parse(Path::new("vocabulary.txt"), text) {
        Ok(v) => assert!(v.tokens.len() < v.total),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
