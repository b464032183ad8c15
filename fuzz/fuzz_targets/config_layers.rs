//! The whole configuration load: main file, drop-ins and `TUTORD_*` environment, each
//! checked on its own and then merged, read from real files as on the board.
//!
//! Input: chunks separated by NUL (which TOML text cannot hold): the main file, then the
//! environment (`NAME=value` lines), then up to six drop-ins. An empty chunk is a file that
//! does not exist.

#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tutord::config::{Sources, load};

/// One folder for the whole run: a new one per input would measure the file system.
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut chunks = text.split('\0');
    let main_text = chunks.next().unwrap_or("");
    let env_text = chunks.next().unwrap_or("");
    let dropins: Vec<&str> = chunks.take(6).collect();

    let main = dir().path().join("tutord.toml");
    let sources = Sources {
        main: main.clone(),
        main_required: false,
        env: env_text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    };
    let dropin_dir = sources.dropin_dir();
    let _ = std::fs::remove_file(&main);
    let _ = std::fs::remove_dir_all(&dropin_dir);
    if !main_text.is_empty() {
        std::fs::write(&main, main_text).expect("write the main file");
    }
    if !dropins.is_empty() {
        std::fs::create_dir(&dropin_dir).expect("create the drop-in folder");
    }
    for (i, d) in dropins.iter().enumerate() {
        if !d.is_empty() {
            let path: PathBuf = dropin_dir.join(format!("{}0-fuzz.toml", i + 1));
            std::fs::write(path, d).expect("write a drop-in");
        }
    }
    if let Err(e) = load(&sources) {
        let _ = e.to_string();
    }
});
