//! The whole faster-whisper → ggml conversion, in memory: `model.bin` and
//! `vocabulary.txt` in, whisper.cpp's file out, as `convert_files` does it.
//!
//! Input: a little-endian `u32` length, that many bytes of `model.bin`, then
//! `vocabulary.txt`.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tutord::voice::convert::{ct2::Ct2Model, ggml, vocab};

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (model_bin, vocabulary) = rest.split_at(len);
    let Ok(text) = std::str::from_utf8(vocabulary) else {
        return;
    };
    let out_path = Path::new("model.ggml");
    let result =
        Ct2Model::read(Path::new("model.bin"), Cursor::new(model_bin)).and_then(|mut m| {
            let v = vocab::parse(Path::new("vocabulary.txt"), text)?;
            let mut out = Vec::new();
            let written = ggml::write(&mut m, &v, &mut out, out_path)?;
            assert_eq!(written.bytes, out.len() as u64);
            Ok(())
        });
    if let Err(e) = result {
        let _ = e.to_string();
    }
});
