//! The multi-turn session: which messages the runtime's KV cache holds, whether a new chat
//! extends them (send only the new messages, `keep_history` does the rest) or not (clear the
//! cache, send a window of the chat), the window that fits the context, and the text of the
//! one turn a run sends.
//!
//! The context budget is the llama.cpp backend's: the instructions plus the most recent
//! turns that fit in `context − max_tokens − margin`. The runtime's API has no tokenizer and
//! no position shift (`rkllm_clear_kv_cache` only drops), so here (1) a text's tokens are
//! estimated from its bytes at the rate the runtime itself reported for what was sent before
//! (`RKLLMPerfStat::prefill_tokens`), with a margin, and (2) a window that slides is sent
//! again whole into a cleared cache. Re-sending is a full prefill, so a slide keeps the turns
//! that fit in half the budget: the next slide comes several turns later instead of at every
//! question once the context is full (llama.cpp's own context shift discards half for the
//! same reason).

use crate::engine::ChatMessage;

/// Tokens per byte assumed before the runtime has counted anything: one token per two bytes
/// over-counts English text for the models' BPE vocabularies (about one per four), so the
/// first window errs on the short side.
const FIRST_TOKENS_PER_BYTE: f64 = 0.5;

/// Over-estimate of every count, for texts denser than the average so far.
const ESTIMATE_MARGIN: f64 = 1.15;

/// The chat the KV cache holds, as far as this side knows.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// Messages in the cache, the last answer included; empty: nothing reusable. The
    /// instructions (a leading system message) and a contiguous run of the chat's turns.
    pub(super) kept: Vec<ChatMessage>,
    /// Tokens those messages take in the cache.
    pub(super) kept_tokens: u32,
    /// Whether the cache may hold anything (and must be cleared before a new conversation).
    pub(super) dirty: bool,
    /// Bytes sent and the tokens the runtime counted for them, over this model's runs.
    sent_bytes: u64,
    sent_tokens: u64,
}

impl Session {
    pub(super) fn forget(&mut self) {
        self.kept.clear();
        self.kept_tokens = 0;
    }

    /// Records what a run sent and the prompt tokens the runtime counted for it.
    pub(super) fn counted(&mut self, bytes: usize, tokens: u32) {
        if bytes > 0 && tokens > 0 {
            self.sent_bytes += bytes as u64;
            self.sent_tokens += u64::from(tokens);
        }
    }

    /// The estimated tokens of `messages` sent as one turn.
    pub(super) fn estimate(&self, messages: &[ChatMessage]) -> usize {
        let rate = if self.sent_bytes > 0 {
            self.sent_tokens as f64 / self.sent_bytes as f64
        } else {
            FIRST_TOKENS_PER_BYTE
        };
        (render(messages).len() as f64 * rate * ESTIMATE_MARGIN).ceil() as usize
    }
}

/// How a chat relates to the kept session.
#[derive(Debug, PartialEq)]
pub(super) enum Plan<'a> {
    /// The chat continues the kept messages with these: send only them. `left_out`: the
    /// chat's messages before the kept run (not counting the instructions).
    Extend {
        new: &'a [ChatMessage],
        left_out: usize,
    },
    /// Anything else: clear the cache and send a window of the chat.
    Fresh,
}

fn same_message(a: &ChatMessage, b: &ChatMessage) -> bool {
    a.role == b.role && a.content.trim() == b.content.trim()
}

/// Whether the chat opens with instructions (kept in every window).
fn head(chat: &[ChatMessage]) -> usize {
    usize::from(chat.first().is_some_and(|m| m.role == "system"))
}

/// Finds the kept messages in `chat`: the same instructions, then the kept turns as a
/// contiguous run anywhere in the chat (the daemon may have trimmed older turns from the
/// chat it sends, so the run is searched for, not assumed at a position), followed by at
/// least one new message.
pub(super) fn plan<'a>(kept: &[ChatMessage], chat: &'a [ChatMessage]) -> Plan<'a> {
    let h = head(kept);
    if kept.is_empty()
        || head(chat) != h
        || !kept[..h].iter().zip(chat).all(|(k, c)| same_message(k, c))
    {
        return Plan::Fresh;
    }
    let run = &kept[h..];
    for start in h..chat.len() {
        let rest = &chat[start..];
        if rest.len() > run.len() && run.iter().zip(rest).all(|(k, c)| same_message(k, c)) {
            return Plan::Extend {
                new: &rest[run.len()..],
                left_out: start - h,
            };
        }
    }
    Plan::Fresh
}

/// The window of `chat` within `budget` estimated tokens (`crate::window`). Returns the
/// window and how many messages were left out, or the estimate of the smallest window
/// (instructions and question alone) when even that does not fit.
pub(super) fn window(
    chat: &[ChatMessage],
    budget: usize,
    estimate: impl Fn(&[ChatMessage]) -> usize,
) -> Result<(Vec<ChatMessage>, usize), usize> {
    let fit = crate::window::fit(chat, |w| {
        let tokens = estimate(w);
        Ok::<_, std::convert::Infallible>(((w.to_vec(), tokens), tokens <= budget))
    });
    match fit {
        Ok(crate::window::Fit::Fits((window, _), left_out)) => Ok((window, left_out)),
        Ok(crate::window::Fit::TooLong((_, tokens))) => Err(tokens),
        Err(never) => match never {},
    }
}

/// The text of the one user turn a run sends (see the module doc).
pub(super) fn render(messages: &[ChatMessage]) -> String {
    let text = match messages {
        [only] => only.content.clone(),
        _ => messages
            .iter()
            .map(|m| format!("{}: {}", m.role, m.content))
            .collect::<Vec<_>>()
            .join("\n"),
    };
    // A C string ends at NUL; a NUL inside a message would cut the prompt short silently.
    text.replace('\0', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    #[test]
    fn a_follow_up_extends_the_kept_chat() {
        let kept = [m("user", "hi"), m("assistant", "hello ")];
        let chat = [m("user", "hi"), m("assistant", "hello"), m("user", "and?")];
        assert_eq!(
            plan(&kept, &chat),
            Plan::Extend {
                new: &chat[2..],
                left_out: 0
            }
        );
        assert_eq!(plan(&[], &chat), Plan::Fresh);
        let other = [m("user", "bye"), m("assistant", "hello"), m("user", "and?")];
        assert_eq!(plan(&kept, &other), Plan::Fresh);
        assert_eq!(plan(&kept, &kept), Plan::Fresh);
    }

    #[test]
    fn a_slid_window_is_found_after_the_turns_it_left_out() {
        let chat = [
            m("system", "be kind"),
            m("user", "q1"),
            m("assistant", "a1"),
            m("user", "q2"),
            m("assistant", "a2"),
            m("user", "q3"),
        ];
        // The cache holds the instructions and the second turn (the first was left out).
        let kept = [
            m("system", "be kind"),
            m("user", "q2"),
            m("assistant", "a2"),
        ];
        assert_eq!(
            plan(&kept, &chat),
            Plan::Extend {
                new: &chat[5..],
                left_out: 2
            }
        );
        // Other instructions: nothing in the cache is reusable.
        let mut changed = chat.clone();
        changed[0] = m("system", "be brief");
        assert_eq!(plan(&kept, &changed), Plan::Fresh);
    }

    #[test]
    fn the_window_keeps_the_instructions_and_the_newest_turns_that_fit() {
        let chat = [
            m("system", "sys"),
            m("user", "q1"),
            m("assistant", "a1"),
            m("user", "q2"),
            m("assistant", "a2"),
            m("user", "q3"),
        ];
        // One "token" per message.
        let count = |w: &[ChatMessage]| w.len();
        assert_eq!(window(&chat, 6, count), Ok((chat.to_vec(), 0)));
        let (w, left_out) = window(&chat, 5, count).unwrap();
        assert_eq!(left_out, 2);
        assert_eq!(w, [&chat[..1], &chat[3..]].concat());
        assert_eq!(window(&chat, 2, count).unwrap().1, 4);
        assert_eq!(window(&chat, 1, count), Err(2));
    }

    #[test]
    fn estimates_follow_what_the_runtime_counted() {
        let mut s = Session::default();
        let q = [m("user", "abcdefghij")]; // 10 bytes
        assert_eq!(s.estimate(&q), 6); // 10 × 0.5 × 1.15, rounded up
        s.counted(100, 25);
        assert_eq!(s.estimate(&q), 3); // 10 × 0.25 × 1.15, rounded up
        s.counted(0, 7); // nothing sent: not counted
        assert_eq!(s.estimate(&q), 3);
    }

    #[test]
    fn renders_one_message_as_is_and_a_chat_as_a_transcript() {
        assert_eq!(render(&[m("user", "a\0b")]), "ab");
        assert_eq!(
            render(&[m("system", "be brief"), m("user", "why?")]),
            "system: be brief\nuser: why?"
        );
    }
}
