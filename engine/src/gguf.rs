//! A first look at a GGUF file before llama.cpp maps it (the parsing is shared with the daemon
//! in `tutord_protocol::gguf`).

use std::io::Read;
use std::path::Path;

pub use tutord_protocol::gguf::{Header, parse_header};

use crate::engine::EngineError;

/// Reads and checks the fixed part of the header.
pub fn check_file(path: &Path) -> Result<Header, EngineError> {
    let bad = |reason: String| EngineError::BadModel {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let file_bytes = f
        .metadata()
        .map_err(|e| bad(format!("cannot stat: {e}")))?
        .len();
    let mut head = [0u8; 24];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(bad(format!("cannot read: {e}"))),
        }
    }
    parse_header(&head[..got], file_bytes).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_path() {
        let err = check_file(Path::new("/nonexistent/m.gguf")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("model file /nonexistent/m.gguf: cannot open")
        );
    }
}
