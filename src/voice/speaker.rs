//! Speaking an answer while it is written: the pieces are cut into sentences, and each
//! sentence is synthesized as soon as it is complete, so the first sentence is heard while
//! the model still writes the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::tts::{Speech, Synthesizer};
use crate::sentence;
use crate::sync::Cancel;

/// What speaking a turn took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spoken {
    /// When the first audio was ready.
    pub first_audio: Option<Instant>,
    /// Total audio produced.
    pub audio: Duration,
    /// Time spent synthesizing.
    pub synthesis: Duration,
    pub sentences: u32,
    pub errors: Vec<String>,
}

/// Cuts streamed text into sentences. The first cut also comes earlier: at a clause (a
/// comma after a few words), before a joining word (`that`, `because`, …) after a few more,
/// or after [`FIRST_CHUNK_MAX_WORDS`] words at the latest. The first audio is what the
/// listener waits for, and synthesizing a long first sentence holds it back (Piper takes
/// ~0.1 s per second of speech on top of the time the model takes to write it); the
/// seam in the intonation is the price, paid once per answer.
#[derive(Debug, Default)]
pub struct Sentences {
    pending: String,
    cut_once: bool,
    /// Everything pushed: where an answer cut short should end depends on all of it.
    said: String,
}

/// Words a first clause needs before a comma may end it.
const FIRST_CLAUSE_WORDS: usize = 4;
/// Words the first chunk needs before it may end before a joining word.
const FIRST_CHUNK_JOIN_WORDS: usize = 6;
/// The first chunk ends after this many words whatever follows.
pub const FIRST_CHUNK_MAX_WORDS: usize = 12;
/// Words a sentence can be cut before with little harm to its intonation.
const JOINERS: [&str; 12] = [
    "that", "which", "because", "and", "but", "so", "when", "where", "who", "if", "while", "or",
];

/// Where the first chunk may end when no punctuation came: before a joining word after
/// [`FIRST_CHUNK_JOIN_WORDS`] words, else after [`FIRST_CHUNK_MAX_WORDS`]. Only whole
/// words count (a word is whole once whitespace follows it).
fn first_chunk_end(text: &str) -> Option<usize> {
    let mut words = Vec::new(); // (start, end) of each whole word
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    for (n, &(s, e)) in words.iter().enumerate() {
        let word = text[s..e].to_ascii_lowercase();
        if n >= FIRST_CHUNK_JOIN_WORDS && JOINERS.contains(&word.as_str()) {
            return Some(s);
        }
    }
    words.get(FIRST_CHUNK_MAX_WORDS - 1).map(|&(_, e)| e)
}

impl Sentences {
    /// Adds a piece; returns the sentences it completed.
    pub fn push(&mut self, piece: &str) -> Vec<String> {
        self.pending.push_str(piece);
        self.said.push_str(piece);
        let mut out = Vec::new();
        loop {
            let cut = self.pending.char_indices().find_map(|(i, c)| {
                let end = i + c.len_utf8();
                let next = self.pending[end..].chars().next();
                let after_space = next.is_some_and(char::is_whitespace);
                let ends = matches!(c, '.' | '!' | '?' | ';' | ':') && after_space
                    || c == '\n'
                    || !self.cut_once
                        && c == ','
                        && after_space
                        && self.pending[..i].split_whitespace().count() >= FIRST_CLAUSE_WORDS;
                ends.then_some(end)
            });
            let cut = cut.or_else(|| {
                (!self.cut_once)
                    .then(|| first_chunk_end(&self.pending))
                    .flatten()
            });
            let Some(end) = cut else { break };
            self.cut_once = true;
            let sentence: String = self.pending.drain(..end).collect();
            if !sentence.trim().is_empty() {
                out.push(sentence.trim().to_string());
            }
        }
        out
    }

    /// The rest, at the end of the answer.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.trim().is_empty()).then(|| rest.trim().to_string())
    }

    /// The rest, at the end of an answer cut short by `max_tokens`: only what the cut answer
    /// keeps of it (`sentence::cut`), so an unfinished sentence or a split word is never
    /// spoken. Parts already given out stay said.
    pub fn finish_cut(&mut self) -> Option<String> {
        let kept = sentence::cut(&self.said).end;
        let rest_starts = self.said.len() - self.pending.len();
        let keep = kept.saturating_sub(rest_starts).min(self.pending.len());
        self.pending.truncate(keep);
        self.finish()
    }
}

/// Speaks sentences in order on a task of its own; `emit` gets each sentence's audio.
pub struct Speaker {
    tx: mpsc::UnboundedSender<String>,
    task: tokio::task::JoinHandle<Spoken>,
    sentences: Sentences,
}

impl Speaker {
    pub fn start<F, Fut>(tts: Arc<dyn Synthesizer>, emit: F) -> Self
    where
        F: FnMut(Speech) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        Self::start_cancellable(tts, Cancel::new(), emit)
    }

    /// Like `start`; once `cancel` is set the sentences left are not synthesized (an
    /// interrupted answer must not keep the cores from the next question).
    pub fn start_cancellable<F, Fut>(tts: Arc<dyn Synthesizer>, cancel: Cancel, mut emit: F) -> Self
    where
        F: FnMut(Speech) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let mut spoken = Spoken::default();
            while let Some(sentence) = rx.recv().await {
                if cancel.is_cancelled() {
                    continue;
                }
                let tts = tts.clone();
                let t = Instant::now();
                let result = tokio::task::spawn_blocking(move || tts.synthesize(&sentence))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                spoken.synthesis += t.elapsed();
                match result {
                    Ok(speech) if !speech.samples.is_empty() => {
                        spoken.first_audio.get_or_insert_with(Instant::now);
                        spoken.audio += speech.duration();
                        spoken.sentences += 1;
                        emit(speech).await;
                    }
                    Ok(_) => {}
                    Err(e) => spoken.errors.push(e),
                }
            }
            spoken
        });
        Self {
            tx,
            task,
            sentences: Sentences::default(),
        }
    }

    /// A piece of the answer.
    pub fn piece(&mut self, piece: &str) {
        for s in self.sentences.push(piece) {
            let _ = self.tx.send(s);
        }
    }

    /// The answer is complete: speaks the rest and returns when all is spoken.
    pub async fn finish(mut self) -> Spoken {
        let rest = self.sentences.finish();
        self.end(rest).await
    }

    /// The answer was cut short by `max_tokens`: speaks what the cut answer keeps of the
    /// rest (see [`Sentences::finish_cut`]) and returns when all is spoken.
    pub async fn finish_cut(mut self) -> Spoken {
        let rest = self.sentences.finish_cut();
        self.end(rest).await
    }

    async fn end(self, rest: Option<String>) -> Spoken {
        if let Some(rest) = rest {
            let _ = self.tx.send(rest);
        }
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

/// 16-bit little-endian PCM bytes of `samples` (what the `Speech` signal carries).
pub fn pcm16le(samples: &[f32]) -> Vec<u8> {
    samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cut_may_come_at_a_clause() {
        let mut s = Sentences::default();
        assert!(s.push("Yes, it").is_empty(), "too short a clause");
        assert_eq!(
            s.push(" is a prime number, because only one and"),
            vec!["Yes, it is a prime number,"]
        );
        assert!(
            s.push(" itself, divide it").is_empty(),
            "later cuts wait for sentences"
        );
        assert_eq!(
            s.push(". Done"),
            vec!["because only one and itself, divide it."]
        );
    }

    #[test]
    fn a_long_first_sentence_is_cut_before_a_joining_word_or_at_twelve_words() {
        let mut s = Sentences::default();
        assert!(
            s.push("A prime number is a whole number greater")
                .is_empty()
        );
        assert_eq!(
            s.push(" than one that has no"),
            vec!["A prime number is a whole number greater than one"]
        );
        // Only the first chunk: the rest waits for its sentence to end.
        assert!(s.push(" divisors but itself and one and so on").is_empty());
        let mut s = Sentences::default();
        let twelve = "one two three four five six seven eight nine ten eleven twelve";
        assert!(
            s.push(twelve).is_empty(),
            "the twelfth word is not whole yet"
        );
        assert_eq!(s.push(" thirteen"), vec![twelve]);
        // Short joiners early in the sentence do not cut it.
        let mut s = Sentences::default();
        assert!(s.push("Yes and no so it is ").is_empty());
    }

    #[test]
    fn sentences_are_cut_as_they_complete() {
        let mut s = Sentences::default();
        assert!(s.push("Half of one").is_empty());
        assert_eq!(s.push(" is 0.5. Then"), vec!["Half of one is 0.5."]);
        assert_eq!(s.push(" add! Done?\nYes"), vec!["Then add!", "Done?"]);
        assert_eq!(s.finish(), Some("Yes".into()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn an_answer_cut_short_leaves_its_unfinished_sentence_unspoken() {
        let mut s = Sentences::default();
        assert_eq!(s.push("Paris is big. It has"), vec!["Paris is big."]);
        assert_eq!(s.finish_cut(), None);
        // A last sentence that was complete at the cut is spoken.
        let mut s = Sentences::default();
        assert_eq!(s.push("Paris is big. It is old."), vec!["Paris is big."]);
        assert_eq!(s.finish_cut(), Some("It is old.".into()));
        // Without a complete sentence the whole words are spoken, never the split one.
        let mut s = Sentences::default();
        assert!(s.push("The capital of Fra").is_empty());
        assert_eq!(s.finish_cut(), Some("The capital of".into()));
        // A first chunk already given out stays said; the split word after it does not.
        let mut s = Sentences::default();
        let twelve = "one two three four five six seven eight nine ten eleven twelve";
        assert_eq!(s.push(&format!("{twelve} thir")), vec![twelve]);
        assert_eq!(s.finish_cut(), None);
        // The same rest, at the end of an answer the model ended itself, is spoken.
        let mut s = Sentences::default();
        s.push("Paris is big. It has");
        assert_eq!(s.finish(), Some("It has".into()));
    }

    #[test]
    fn pcm_is_little_endian_and_clipped() {
        assert_eq!(
            pcm16le(&[0.0, 1.0, -2.0]),
            vec![0, 0, 0xff, 0x7f, 0x01, 0x80]
        );
    }

    struct Fake;
    impl Synthesizer for Fake {
        fn synthesize(&self, text: &str) -> Result<Speech, super::super::tts::TtsError> {
            Ok(Speech {
                samples: vec![0.1; text.len() * 10],
                sample_rate: 1000,
            })
        }
    }

    #[tokio::test]
    async fn sentences_are_spoken_in_order_before_the_answer_ends() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut sp = Speaker::start(Arc::new(Fake), move |s: Speech| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(s.samples.len());
            }
        });
        sp.piece("One. Two");
        // The first sentence is spoken while the answer goes on.
        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert_eq!(first, Some(40));
        sp.piece(" three.");
        let spoken = sp.finish().await;
        assert_eq!(rx.recv().await, Some(100));
        assert_eq!(spoken.sentences, 2);
        assert!(spoken.first_audio.is_some());
    }
}
