//! The multi-turn session: which chat the runtime's KV cache holds, whether a new chat
//! extends it (send only the new messages, `keep_history` does the rest) or not (clear the
//! cache, send the whole chat), and the text of the one turn a run sends.

use crate::engine::ChatMessage;

/// The chat the KV cache holds, as far as this side knows.
#[derive(Debug, Default)]
pub(super) struct Session {
    /// Messages in the cache, the last answer included; empty: nothing reusable.
    pub(super) kept: Vec<ChatMessage>,
    /// Tokens those messages take in the cache.
    pub(super) kept_tokens: u32,
    /// Whether the cache may hold anything (and must be cleared before a new conversation).
    pub(super) dirty: bool,
}

impl Session {
    pub(super) fn forget(&mut self) {
        self.kept.clear();
        self.kept_tokens = 0;
    }
}

/// How a chat relates to the kept session.
#[derive(Debug, PartialEq)]
pub(super) enum Plan<'a> {
    /// The chat is the kept one plus these messages: send only them.
    Extend(&'a [ChatMessage]),
    /// Anything else: clear the cache and send the whole chat.
    Fresh,
}

fn same_message(a: &ChatMessage, b: &ChatMessage) -> bool {
    a.role == b.role && a.content.trim() == b.content.trim()
}

pub(super) fn plan<'a>(kept: &[ChatMessage], chat: &'a [ChatMessage]) -> Plan<'a> {
    let extends = !kept.is_empty()
        && chat.len() > kept.len()
        && kept.iter().zip(chat).all(|(k, c)| same_message(k, c));
    if extends {
        Plan::Extend(&chat[kept.len()..])
    } else {
        Plan::Fresh
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
        assert_eq!(plan(&kept, &chat), Plan::Extend(&chat[2..]));
        assert_eq!(plan(&[], &chat), Plan::Fresh);
        let other = [m("user", "bye"), m("assistant", "hello"), m("user", "and?")];
        assert_eq!(plan(&kept, &other), Plan::Fresh);
        assert_eq!(plan(&kept, &kept), Plan::Fresh);
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
