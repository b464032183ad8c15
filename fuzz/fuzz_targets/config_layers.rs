//! The whole configuration load: main file, drop-ins and `TUTORD_*` environment, each
//! checked on its own and then merged, read from real files as on the board.
//!
//! Input: the layout of `tutord::config::layers` (main file, environment, drop-ins,
//! separated by NUL).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tutord::config::load;

/// One folder for the whole run: a new one per input would measure the file system.
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = tutord::config::layers::write(dir().path(), text).expect("write the layers");
    if let Err(e) = load(&sources) {
        let _ = e.to_string();
    }
});
