//! faster-whisper's `vocabulary.txt` → the byte strings whisper.cpp's vocabulary holds.
//!
//! The file has one token per line, as GPT-2's byte-level BPE spells tokens: each byte is
//! shown as a printable character (`Ġ` for a space, `Ċ` for a newline), so no token holds a
//! raw newline. The tokens are mapped back to bytes with the inverse of GPT-2's
//! `bytes_to_unicode`. whisper.cpp's file holds only the ordinary tokens, those before
//! `<|endoftext|>`: it names the special ones itself from their ids (as openai-whisper's
//! `gpt2.tiktoken`, which whisper.cpp's own converter reads, also holds only those).

use std::path::Path;

use super::ConvertError;

/// Where the special tokens start.
pub const END_OF_TEXT: &str = "<|endoftext|>";
/// Far above any real vocabulary (whisper's is 51,865): a bigger file is not one.
const MAX_TOKENS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    /// The ordinary tokens, as bytes, in id order.
    pub tokens: Vec<Vec<u8>>,
    /// All lines, special tokens included: the model's vocabulary size.
    pub total: usize,
}

/// GPT-2's byte → character table: printable Latin-1 bytes stand for themselves, the
/// other 68 are moved to U+0100 onwards, in byte order.
fn byte_for_char() -> [Option<u8>; 324] {
    let mut table = [None; 324];
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    let mut moved = 0usize;
    for b in 0..=255u8 {
        if printable(b) {
            table[usize::from(b)] = Some(b);
        } else {
            table[256 + moved] = Some(b);
            moved += 1;
        }
    }
    table
}

/// Parses the file's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Vocabulary, ConvertError> {
    let table = byte_for_char();
    let bad = |line: usize, reason: String| ConvertError::Vocabulary {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Err(bad(1, "the file is empty".into()));
    }
    let mut tokens = Vec::new();
    let mut total = 0usize;
    let mut special = false;
    for (i, line) in body.split('\n').enumerate() {
        let number = i + 1;
        if number > MAX_TOKENS {
            return Err(bad(number, format!("more than {MAX_TOKENS} tokens")));
        }
        total = number;
        if line == END_OF_TEXT {
            special = true;
        }
        if special {
            continue;
        }
        let mut bytes = Vec::with_capacity(line.len());
        for c in line.chars() {
            let b = table.get(c as usize).copied().flatten().ok_or_else(|| {
                bad(
                    number,
                    format!(
                        "'{}' (U+{:04X}) is not a character of GPT-2's byte-level \
                             alphabet: is this a faster-whisper vocabulary.txt?",
                        c.escape_debug(),
                        c as u32
                    ),
                )
            })?;
            bytes.push(b);
        }
        if bytes.is_empty() {
            return Err(bad(number, "an empty token".into()));
        }
        tokens.push(bytes);
    }
    if !special {
        return Err(bad(
            total,
            format!("no `{END_OF_TEXT}` line: the special tokens are missing"),
        ));
    }
    Ok(Vocabulary { tokens, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_map_back_to_bytes() {
        let v = parse(
            Path::new("v.txt"),
            "!\nĠthe\nĊ\nÃ©\nĀ\n<|endoftext|>\n<|startoftranscript|>\n",
        )
        .unwrap();
        assert_eq!(
            v.tokens,
            [
                b"!".to_vec(),
                b" the".to_vec(),
                b"\n".to_vec(),
                "é".as_bytes().to_vec(),
                vec![0u8]
            ]
        );
        assert_eq!(v.total, 7);
    }

    #[test]
    fn every_byte_has_one_character() {
        let table = byte_for_char();
        let mut seen = [false; 256];
        for b in table.iter().flatten() {
            assert!(!seen[usize::from(*b)], "{b} twice");
            seen[usize::from(*b)] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn foreign_characters_empty_files_and_missing_specials_are_named() {
        let p = Path::new("vocabulary.txt");
        let e = parse(p, "a\nb c\n<|endoftext|>\n").unwrap_err().to_string();
        assert!(e.starts_with("vocabulary.txt: line 2: ' ' (U+0020)"), "{e}");
        let e = parse(p, "").unwrap_err().to_string();
        assert!(e.contains("line 1: the file is empty"), "{e}");
        let e = parse(p, "a\nb\n").unwrap_err().to_string();
        assert!(e.contains("line 2: no `<|endoftext|>` line"), "{e}");
        let e = parse(p, "a\n\n<|endoftext|>").unwrap_err().to_string();
        assert!(e.contains("line 2: an empty token"), "{e}");
    }
}
