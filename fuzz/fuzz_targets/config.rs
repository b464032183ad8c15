//! The configuration parser: one TOML document (the main file or a drop-in) checked on top
//! of the defaults, as `tutord` checks each layer before merging.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader reads files with `read_to_string`: text that is not UTF-8 never gets here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = tutord::config::parse_toml("fuzz.toml", text) {
        // Messages are built from the input too.
        let _ = e.to_string();
    }
});
