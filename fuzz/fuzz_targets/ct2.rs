//! CTranslate2's `model.bin` reader: the index, then every variable's bytes and the
//! Whisper sizes, as the converter asks for them.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tutord::voice::convert::{ct2::Ct2Model, ggml};

fuzz_target!(|data: &[u8]| {
    let mut model = match Ct2Model::read(Path::new("model.bin"), Cursor::new(data)) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for var in model.variables.clone() {
        let bytes = model
            .data(&var)
            .expect("sizes were checked when the index was read");
        assert_eq!(bytes.len() as u64, var.bytes);
        if let Err(e) = model.scalar(&var.name) {
            let _ = e.to_string();
        }
    }
    if let Err(e) = ggml::hparams(&mut model) {
        let _ = e.to_string();
    }
});
