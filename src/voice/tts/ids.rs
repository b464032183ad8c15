//! Piper's phoneme ids: each phoneme (a Unicode scalar of espeak-ng's IPA) looked up in the
//! voice's `phoneme_id_map`, as piper-phonemize does: BOS `^`, then pad `_` after BOS and
//! after every phoneme, then EOS `$`. Phonemes the voice does not know are skipped.

use std::collections::HashMap;

/// `phoneme_id_map` from a voice's `.onnx.json`: one or more ids per phoneme.
pub type IdMap = HashMap<String, Vec<i64>>;

/// The ids for `clauses` (espeak-ng's phonemes, one string per clause). Clauses are joined
/// by a space, as Piper does when a sentence has several.
pub fn to_ids(clauses: &[String], map: &IdMap) -> Vec<i64> {
    let id = |p: &str| map.get(p).map(Vec::as_slice).unwrap_or(&[]);
    let mut ids = Vec::new();
    ids.extend_from_slice(id("^"));
    ids.extend_from_slice(id("_"));
    for (i, clause) in clauses.iter().enumerate() {
        let mut buf = [0u8; 4];
        let joined = (i > 0).then_some(' ').into_iter().chain(clause.chars());
        for c in joined {
            let known = id(c.encode_utf8(&mut buf));
            if !known.is_empty() {
                ids.extend_from_slice(known);
                ids.extend_from_slice(id("_"));
            }
        }
    }
    ids.extend_from_slice(id("$"));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> IdMap {
        [
            ("_", 0),
            ("^", 1),
            ("$", 2),
            (" ", 3),
            ("a", 14),
            ("ˈ", 120),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), vec![v]))
        .collect()
    }

    #[test]
    fn bos_pad_between_every_phoneme_eos() {
        let ids = to_ids(&["ˈa".into()], &map());
        assert_eq!(ids, [1, 0, 120, 0, 14, 0, 2]);
    }

    #[test]
    fn clauses_are_joined_by_a_space_and_unknown_phonemes_skipped() {
        let ids = to_ids(&["a".into(), "aQ".into()], &map());
        assert_eq!(ids, [1, 0, 14, 0, 3, 0, 14, 0, 2]);
        assert_eq!(to_ids(&[], &map()), [1, 0, 2]);
    }
}
