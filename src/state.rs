//! The daemon's externally visible state: one lowercase word on D-Bus (`State`).

use std::fmt;

/// What the daemon is doing, as the UI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Booting,
    Tuning,
    Benchmarking,
    Loading,
    Ready,
    Listening,
    Thinking,
    Speaking,
    Error,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Booting,
        State::Tuning,
        State::Benchmarking,
        State::Loading,
        State::Ready,
        State::Listening,
        State::Thinking,
        State::Speaking,
        State::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Booting => "booting",
            State::Tuning => "tuning",
            State::Benchmarking => "benchmarking",
            State::Loading => "loading",
            State::Ready => "ready",
            State::Listening => "listening",
            State::Thinking => "thinking",
            State::Speaking => "speaking",
            State::Error => "error",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_distinct_lowercase_words() {
        let names: Vec<_> = State::ALL.iter().map(|s| s.as_str()).collect();
        for n in &names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase()), "{n}");
        }
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), names.len());
    }
}
