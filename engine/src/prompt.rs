//! How a conversation becomes the model's prompt text.
//!
//! A chat model carries its own template in the GGUF (`tokenizer.chat_template`), and
//! llama.cpp applies it. A base model has none, and was never trained on a chat format, so
//! tutord gives it the plainest transcript a text model continues well: the instructions as
//! a paragraph, then `Student:` and `Tutor:` lines, ending with `Tutor:` for the answer.
//! Left alone, a base model goes on to write the student's next line too, so the answer ends
//! where it starts a line with a speaker's name ([`Stop`]). The format is documented in
//! docs/models.md; the daemon warns in the journal and `Diagnostics()` when it is used.

use crate::engine::ChatMessage;

/// Where a base model's answer ends: it started the next speaker's line.
pub const PLAIN_STOPS: [&str; 2] = ["\nStudent:", "\nTutor:"];

/// What `ModelInfo::chat_format` says for the fallback.
pub const PLAIN_NAME: &str = tutord_protocol::PLAIN_CHAT_FORMAT;

/// The fallback prompt for `chat` (system, then user/assistant turns, the last a question).
pub fn plain(chat: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in chat {
        let text = m.content.trim();
        match m.role.as_str() {
            "system" => {
                out.push_str(text);
                out.push_str("\n\n");
            }
            "assistant" => {
                out.push_str("Tutor: ");
                out.push_str(text);
                out.push('\n');
            }
            _ => {
                out.push_str("Student: ");
                out.push_str(text);
                out.push('\n');
            }
        }
    }
    out.push_str("Tutor:");
    out
}

/// Holds back generated text that may be the start of a stop string, and says when one
/// appeared: what the user sees never contains a stop string or a piece of one.
#[derive(Debug, Default)]
pub struct Stop {
    stops: &'static [&'static str],
    held: String,
}

/// What to do with a piece.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Pass this text on (possibly empty) and go on.
    Go(String),
    /// Pass this text on and end the answer.
    End(String),
}

impl Stop {
    pub fn new(stops: &'static [&'static str]) -> Self {
        Self {
            stops,
            held: String::new(),
        }
    }

    pub fn push(&mut self, piece: &str) -> Scan {
        self.held.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            return Scan::End(out);
        }
        // Keep the longest tail that a stop string begins with.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).map(move |n| &s[..n]))
            .filter(|p| self.held.ends_with(p))
            .map(|p| p.len())
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        Scan::Go(out)
    }

    /// What is still held when the answer ends another way.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn plain_transcript_ends_with_the_tutors_turn() {
        let chat = [
            msg("system", "You are a tutor."),
            msg("user", "What is 2+2?"),
            msg("assistant", "4. "),
            msg("user", " And 3+3?"),
        ];
        assert_eq!(
            plain(&chat),
            "You are a tutor.\n\nStudent: What is 2+2?\nTutor: 4.\nStudent: And 3+3?\nTutor:"
        );
    }

    #[test]
    fn stops_at_the_next_speaker_and_never_shows_part_of_it() {
        let mut s = Stop::new(&PLAIN_STOPS);
        assert_eq!(s.push(" Six."), Scan::Go(" Six.".into()));
        assert_eq!(s.push("\nStu"), Scan::Go(String::new()));
        assert_eq!(s.push("dent: and"), Scan::End(String::new()));
        let mut s = Stop::new(&PLAIN_STOPS);
        // A newline that turns out to be text is passed on once it is clear.
        assert_eq!(s.push("Yes\n"), Scan::Go("Yes".into()));
        assert_eq!(s.push("No"), Scan::Go("\nNo".into()));
        assert_eq!(s.push(" end\nT"), Scan::Go(" end".into()));
        assert_eq!(s.finish(), "\nT");
        let mut s = Stop::new(&PLAIN_STOPS);
        assert_eq!(s.push("A.\nTutor: B"), Scan::End("A.".into()));
    }
}
