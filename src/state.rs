//! The daemon's externally visible state: one lowercase word on D-Bus (`State`), the status
//! the daemon publishes, and the tutor's activity it derives `State` from once booted.

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
    /// Booted and serving, but without a language model: `StatusText` and `LastError` say
    /// why (none configured, a failed load, a model given up). `Speak`, `History`, the
    /// properties still work; `Ask` is refused with `NotReady`.
    Degraded,
    Error,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Booting,
        State::Tuning,
        State::Benchmarking,
        State::Loading,
        State::Ready,
        State::Listening,
        State::Thinking,
        State::Speaking,
        State::Degraded,
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
            State::Degraded => "degraded",
            State::Error => "error",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the tutor is doing once booted. The published `State` is derived from it, so
/// overlapping work (an answer still being spoken while the next question is heard) never
/// leaves a stale word behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// The microphone is taking a question.
    pub listening: bool,
    /// Answers being written.
    pub thinking: u32,
    /// Answers or `Speak` texts being spoken.
    pub speaking: u32,
}

impl Activity {
    /// Listening wins (the user is talking), then speaking (what they hear), then thinking.
    pub fn state(&self) -> State {
        if self.listening {
            State::Listening
        } else if self.speaking > 0 {
            State::Speaking
        } else if self.thinking > 0 {
            State::Thinking
        } else {
            State::Ready
        }
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

    #[test]
    fn activity_says_what_the_user_notices_first() {
        let mut a = Activity::default();
        assert_eq!(a.state(), State::Ready);
        a.thinking = 1;
        assert_eq!(a.state(), State::Thinking);
        a.speaking = 1;
        assert_eq!(a.state(), State::Speaking);
        a.listening = true;
        assert_eq!(a.state(), State::Listening);
    }
}

/// What the daemon publishes about itself (the D-Bus properties `State`, `StatusText`,
/// `Progress`, `Board`, `LastError`, `LastTokensPerSecond`, `LastTimeToFirstToken`). The
/// daemon owns it in a `watch`: the properties read it, and one task turns its changes into
/// `PropertiesChanged`, so no domain ever touches the D-Bus interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub state: State,
    pub status_text: String,
    pub progress: f64,
    pub board: String,
    pub last_error: String,
    pub last_tokens_per_second: f64,
    pub last_time_to_first_token: f64,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: State::Booting,
            status_text: "Starting".into(),
            progress: 0.0,
            board: "unknown".into(),
            last_error: String::new(),
            last_tokens_per_second: 0.0,
            last_time_to_first_token: 0.0,
        }
    }
}
