//! The context window both backends slide: the instructions (a leading system message), then
//! as many of the most recent turns as fit, then the question. Older turns leave whole (a
//! question with its answer), never cut in the middle; they stay in the daemon's store.

use crate::engine::ChatMessage;

/// How a chat fits the budget.
#[derive(Debug, PartialEq)]
pub enum Fit<T> {
    /// `measure`'s value for the window, and how many of the oldest messages it leaves out.
    Fits(T, usize),
    /// Even the instructions and the question alone do not fit: their value.
    TooLong(T),
}

/// Finds the window of `chat` with the fewest turns left out for which `measure` says it
/// fits (`measure(window)` returns a value, such as the window's tokens, and whether it fits).
/// Leaving more out never makes a window longer, so the fewest are found by bisection: a
/// 60-turn lesson's history is measured ~6 times per question, not once per turn left out
/// (that grew the first token's wait with the lesson).
pub fn fit<T, E>(
    chat: &[ChatMessage],
    mut measure: impl FnMut(&[ChatMessage]) -> Result<(T, bool), E>,
) -> Result<Fit<T>, E> {
    let (all, fits) = measure(chat)?;
    if fits {
        return Ok(Fit::Fits(all, 0));
    }
    let head = usize::from(chat.first().is_some_and(|m| m.role == "system"));
    // At most all but the instructions and the question leave.
    let most = chat.len().saturating_sub(1).saturating_sub(head);
    let mut without = |k: usize| {
        let dropped = (2 * k).min(most);
        let mut window: Vec<ChatMessage> = chat[..head].to_vec();
        window.extend_from_slice(&chat[head + dropped..]);
        measure(&window)
    };
    let (mut lo, mut hi) = (0, most.div_ceil(2));
    let (mut best, fits) = without(hi)?;
    if !fits {
        return Ok(Fit::TooLong(best));
    }
    // Invariant: leaving out `lo` turns does not fit, `hi` does (`best`).
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let (value, fits) = without(mid)?;
        if fits {
            (hi, best) = (mid, value);
        } else {
            lo = mid;
        }
    }
    Ok(Fit::Fits(best, (2 * hi).min(most)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    #[test]
    fn keeps_the_instructions_and_the_newest_turns_that_fit() {
        let chat = [
            m("system", "sys"),
            m("user", "q1"),
            m("assistant", "a1"),
            m("user", "q2"),
            m("assistant", "a2"),
            m("user", "q3"),
        ];
        // One "token" per message; the value is the window itself.
        let within =
            |budget: usize| fit(&chat, |w| Ok::<_, ()>((w.to_vec(), w.len() <= budget))).unwrap();
        assert_eq!(within(6), Fit::Fits(chat.to_vec(), 0));
        assert_eq!(within(5), Fit::Fits([&chat[..1], &chat[3..]].concat(), 2));
        assert_eq!(within(2), Fit::Fits([&chat[..1], &chat[5..]].concat(), 4));
        assert_eq!(within(1), Fit::TooLong([&chat[..1], &chat[5..]].concat()));
        // Without instructions, every turn may leave but the question.
        assert_eq!(
            fit(&chat[1..], |w| Ok::<_, ()>((w.len(), w.len() <= 1))).unwrap(),
            Fit::Fits(1, 4)
        );
    }
}
