//! Where an answer cut short by `max_tokens` should end. The tutor stores and shows the cut
//! answer, and the voice speaks only what the cut keeps, so both read the same rule here.
//!
//! The rule: the answer ends after its last complete sentence; if it has none, after its
//! last whole word, followed by [`MARKER`] so that a reader sees it was cut.
//! - A sentence ends at `.`, `!`, `?` or `…`, with any closing quotes or brackets after it,
//!   followed by whitespace. At the very end of the text it ends there too, except a `.`
//!   after a digit (it may be the decimal point of a number cut in half).
//! - `。`, `！` and `？` end a sentence whatever follows (no space is written after them).
//! - A line break ends a line (a list item, a heading) as a sentence would.
//! - A `.` after a number that starts a line is a list's numbering, not a sentence end.
//! - Without a complete sentence, the last word is dropped unless whitespace follows it (the
//!   cut may have split it); in Chinese and Japanese, written without spaces, each character
//!   counts as a word. Commas and dashes left dangling before the marker go too.

/// Appended to an answer that was cut before its first sentence ended.
pub const MARKER: &str = " …";

/// Characters that may close a sentence after its end mark.
const CLOSERS: [char; 11] = ['"', '\'', '”', '’', '»', ')', ']', '」', '』', '）', '*'];

/// What to keep of an answer cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Bytes of the answer kept.
    pub end: usize,
    /// No sentence was complete: the kept words need [`MARKER`].
    pub unfinished: bool,
}

/// Where `text`, an answer cut short, should end.
pub fn cut(text: &str) -> Cut {
    if let Some(end) = last_sentence_end(text) {
        return Cut {
            end: text[..end].trim_end().len(),
            unfinished: false,
        };
    }
    let words = text[..last_word_end(text)].trim_end_matches(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | ':' | '-' | '–' | '—')
    });
    Cut {
        end: words.len(),
        unfinished: true,
    }
}

/// `text`, an answer cut short, ended cleanly by the rule of this module.
pub fn cut_answer(text: &str) -> String {
    let c = cut(text);
    let kept = &text[..c.end];
    match (c.unfinished, kept.trim().is_empty()) {
        (false, _) => kept.to_string(),
        (true, true) => MARKER.trim_start().to_string(),
        (true, false) => format!("{kept}{MARKER}"),
    }
}

/// The byte after the last complete sentence (or line) of `text`, if it has one.
fn last_sentence_end(text: &str) -> Option<usize> {
    let mut last = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let wide = matches!(c, '。' | '！' | '？');
        if c == '\n' {
            if !text[..i].trim().is_empty() {
                last = Some(i);
            }
            continue;
        }
        if !wide && !matches!(c, '.' | '!' | '?' | '…') {
            continue;
        }
        let mut end = i + c.len_utf8();
        while let Some(&(j, q)) = chars.peek().filter(|(_, q)| CLOSERS.contains(q)) {
            end = j + q.len_utf8();
            chars.next();
        }
        let next = text[end..].chars().next();
        let at_end = next.is_none();
        if !(wide || at_end || next.is_some_and(char::is_whitespace)) {
            continue;
        }
        if c == '.' && (list_number(&text[..i]) || at_end && ends_with_digit(&text[..i])) {
            continue;
        }
        last = Some(end);
    }
    last
}

/// Whether `before` (the text before a `.`) ends with a number that starts its line.
fn list_number(before: &str) -> bool {
    let line = before.rsplit('\n').next().unwrap_or(before).trim_start();
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
}

fn ends_with_digit(before: &str) -> bool {
    before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_digit())
}

/// The byte after the last whole word of `text`, an answer cut short: a word is whole when
/// whitespace follows it, or when it is a character of a script written without spaces.
fn last_word_end(text: &str) -> usize {
    for (i, c) in text.char_indices().rev() {
        if c.is_whitespace() {
            return i;
        }
        if written_without_spaces(c) {
            return i + c.len_utf8();
        }
    }
    0
}

/// Chinese characters, Japanese kana and the CJK punctuation between them.
fn written_without_spaces(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x30FF // CJK punctuation, hiragana, katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0xFF01..=0xFF60) // full-width punctuation and letters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_answer_ends_at_its_last_complete_sentence() {
        assert_eq!(cut_answer("Paris is big. It has"), "Paris is big.");
        assert_eq!(
            cut_answer("Yes! Is it? Sure… and then"),
            "Yes! Is it? Sure…"
        );
        assert_eq!(cut_answer("He said \"hi.\" Then she"), "He said \"hi.\"");
        assert_eq!(cut_answer("It ends here."), "It ends here.");
        assert_eq!(cut_answer(" Leading space. trailing"), " Leading space.");
        assert_eq!(cut_answer("東京は大きい。人が多"), "東京は大きい。");
        assert_eq!(cut_answer("好吗？好"), "好吗？");
        // A decimal point is not an end, nor one that may be a number cut in half.
        assert_eq!(
            cut_answer("Half is 0.5 and pi is 3."),
            "Half is 0.5 and pi is …"
        );
        assert_eq!(cut_answer("Pi is 3. Then"), "Pi is 3.");
    }

    #[test]
    fn lines_end_like_sentences_and_list_numbers_do_not() {
        assert_eq!(
            cut_answer("Facts:\n1. Paris is big\n2. Lyon is sm"),
            "Facts:\n1. Paris is big"
        );
        assert_eq!(cut_answer("1. Paris\n2."), "1. Paris");
        assert_eq!(cut_answer("\n\nParis is"), "\n\nParis …");
    }

    #[test]
    fn without_a_sentence_the_whole_words_are_kept_and_marked() {
        assert_eq!(cut_answer("The capital of Fra"), "The capital of …");
        assert_eq!(
            cut_answer("The capital of France "),
            "The capital of France …"
        );
        assert_eq!(
            cut_answer("Well, the capital, which"),
            "Well, the capital …"
        );
        assert_eq!(cut_answer("Paris — the"), "Paris …");
        assert_eq!(cut_answer("Supercalifrag"), "…");
        assert_eq!(cut_answer(""), "…");
        assert_eq!(cut_answer("東京は日本の首"), "東京は日本の首 …");
        assert_eq!(cut_answer("日本のTok"), "日本の …");
        assert_eq!(
            cut("The capital of Fra"),
            Cut {
                end: 14,
                unfinished: true
            }
        );
    }
}
