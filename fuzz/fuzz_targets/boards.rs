//! Board profiles (`[platform] boards`, laid out like `config/boards.toml`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tutord::platform::profile::Profiles::parse("boards.toml", text) {
        Ok(p) => {
            // Parse promises a `generic` board: detection falls back on it.
            assert!(p.get("generic").is_some());
            for b in &p.boards {
                let _ = b.board();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
