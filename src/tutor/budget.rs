//! Whether a question can fit the model's context at all. The engine's window leaves older
//! turns out of the prompt, so any normal question fits; only one that is longer than the
//! whole budget by itself cannot, and it is refused when asked (`InvalidArgument`, naming
//! the limit in tokens) rather than failing in the engine after it became a turn.
//!
//! Counting costs a round trip to the worker, so it is done only when it can matter: every
//! token of the tokenizers tutord runs (byte-level BPE, SentencePiece with byte fallback) is
//! at least one byte of text, so a text's bytes bound its tokens, and a question whose bytes
//! fit the budget next to the instructions' bytes surely fits.

use tutord_protocol::PROMPT_MARGIN;

/// The chat template's own tokens around the instructions and the question (role headers,
/// begin-of-text, Llama 3's date line, the assistant header that opens the answer), which the
/// counts of the two texts do not include: an allowance above what the catalog's templates
/// add (~15 tokens for ChatML, ~35 for Llama 3).
pub const TEMPLATE_TOKENS: u32 = 48;

/// The context a question must fit, from the loaded model and the turn's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The model's context length in tokens.
    pub context: u32,
    /// The answer's `max_tokens`.
    pub max_tokens: u32,
}

impl Budget {
    /// Tokens the instructions and the question may take together: the context less the
    /// answer, the margin the engine keeps and the template's own tokens.
    pub fn prompt_tokens(&self) -> u32 {
        self.context.saturating_sub(
            self.max_tokens
                .saturating_add(PROMPT_MARGIN)
                .saturating_add(TEMPLATE_TOKENS),
        )
    }

    /// The cheap check: a question of at most this many bytes, next to instructions of
    /// `instructions_bytes`, fits whatever the tokenizer makes of either; a longer one is
    /// counted.
    pub fn sure_bytes(&self, instructions_bytes: usize) -> usize {
        (self.prompt_tokens() as usize).saturating_sub(instructions_bytes)
    }

    /// The exact check, from the counts of the question and of the instructions: the
    /// refusal's message when the question cannot fit.
    pub fn check(&self, question_tokens: u32, instructions_tokens: u32) -> Result<(), String> {
        let limit = self.prompt_tokens().saturating_sub(instructions_tokens);
        if question_tokens <= limit {
            return Ok(());
        }
        Err(format!(
            "the question is {question_tokens} tokens; at most {limit} fit (context {} - \
             max_tokens {} - the tutor's instructions {instructions_tokens} - chat template and \
             margin {}): shorten it",
            self.context,
            self.max_tokens,
            PROMPT_MARGIN + TEMPLATE_TOKENS
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Budget = Budget {
        context: 2048,
        max_tokens: 256,
    };

    #[test]
    fn the_prompt_gets_what_the_answer_margin_and_template_leave() {
        assert_eq!(SMALL.prompt_tokens(), 2048 - 256 - 16 - 48);
        let greedy = Budget {
            context: 2048,
            max_tokens: 4096,
        };
        assert_eq!(greedy.prompt_tokens(), 0);
    }

    #[test]
    fn a_question_within_the_byte_bound_needs_no_count() {
        // 1728 tokens for the prompt, 300 bytes of instructions: 1428 bytes surely fit.
        assert_eq!(SMALL.sure_bytes(300), 1428);
        assert_eq!(SMALL.sure_bytes(5000), 0);
    }

    #[test]
    fn a_counted_question_over_the_limit_is_refused_naming_it() {
        assert_eq!(SMALL.check(1628, 100), Ok(()));
        let refused = SMALL.check(1629, 100).unwrap_err();
        assert_eq!(
            refused,
            "the question is 1629 tokens; at most 1628 fit (context 2048 - max_tokens 256 - \
             the tutor's instructions 100 - chat template and margin 64): shorten it"
        );
        let no_room = Budget {
            context: 512,
            max_tokens: 4096,
        };
        assert!(no_room.check(1, 10).unwrap_err().contains("at most 0 fit"));
    }
}
