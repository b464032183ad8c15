//! The model catalog (`models.toml`): syntax, then every entry's fields and sources.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match tutord::models::Catalog::parse("models.toml", text) {
        Ok(catalog) => {
            // What `tutorctl models fetch` does next with the names it is given.
            let _ = catalog.select(&[]);
            if let Err(e) = catalog.select(&["whisper-tiny.en".into()]) {
                let _ = e.to_string();
            }
            for m in &catalog.models {
                let _ = m.path_in(std::path::Path::new("/var/lib/tutord/models"));
                for s in &m.sources {
                    for p in &s.parts {
                        let _ = p.to_string();
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
