//! `tutorctl`'s library side: a D-Bus client of `org.tutord.Tutor1`, like `systemctl` is of
//! systemd. It talks D-Bus only.

pub mod plan;
pub mod proxy;
pub mod render;
pub mod roofline;
pub mod tuning;

use std::collections::HashMap;

use zbus::{Connection, OwnedVariant};

use crate::api;
use crate::cli::BusChoice;
pub use proxy::TutorProxy;

/// What can go wrong for a client; every message is one line for a person.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot connect to the {bus}: {source}")]
    Connect { bus: BusChoice, source: zbus::Error },
    #[error("tutord is not running: nobody owns {name} on the {bus}")]
    NotRunning { name: &'static str, bus: BusChoice },
    #[error("{0}")]
    Call(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl CtlError {
    fn call(e: zbus::Error) -> Self {
        // The bus answers for a daemon that left (stopped, crashed) with a call pending;
        // zbus gives that as a method error or as its fdo variant: tell by the text.
        let text = e.to_string();
        if text.contains("org.freedesktop.DBus.Error.NoReply") && text.contains("disconnected") {
            return CtlError::Call(format!(
                "tutord went away before it answered (stopped or crashed; `journalctl -u \
                 tutord` says which): {text}"
            ));
        }
        // Named errors read best as "Name: message"; zbus's Display already does that for
        // method errors.
        CtlError::Call(match e {
            zbus::Error::MethodError(name, Some(msg), _) => format!("{name}: {msg}"),
            other => other.to_string(),
        })
    }
}

/// How long `ask` and `listen` wait for the next piece of an answer, unless
/// `TUTORCTL_ANSWER_SILENCE_S` says otherwise.
const ANSWER_SILENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The wait for the next piece: a minute, or `TUTORCTL_ANSWER_SILENCE_S` seconds. A board
/// under QEMU's TCG (the image test) runs the voice and the model on emulated cores and can
/// pass more than a minute between two pieces on a slow host.
fn answer_silence() -> Result<std::time::Duration, CtlError> {
    silence_from(std::env::var("TUTORCTL_ANSWER_SILENCE_S").ok().as_deref())
}

fn silence_from(value: Option<&str>) -> Result<std::time::Duration, CtlError> {
    let Some(v) = value else {
        return Ok(ANSWER_SILENCE);
    };
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| {
            CtlError::Call(format!(
                "TUTORCTL_ANSWER_SILENCE_S={v:?}: expected a whole number of seconds above 0"
            ))
        })
}

/// A connected client.
pub struct Client {
    proxy: TutorProxy<'static>,
}

impl Client {
    /// Connects and checks that tutord owns its name, so "not running" is told apart from
    /// "the call failed".
    pub async fn connect(bus_choice: &BusChoice) -> Result<Self, CtlError> {
        let conn: Connection =
            bus_choice
                .builder()
                .build()
                .await
                .map_err(|source| CtlError::Connect {
                    bus: bus_choice.clone(),
                    source,
                })?;
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .map_err(CtlError::call)?;
        let owned = dbus
            .name_has_owner(api::NAME.try_into().expect("valid bus name"))
            .await
            .map_err(|e| CtlError::call(e.into()))?;
        if !owned {
            return Err(CtlError::NotRunning {
                name: api::NAME,
                bus: bus_choice.clone(),
            });
        }
        let proxy = TutorProxy::new(&conn).await.map_err(CtlError::call)?;
        Ok(Self { proxy })
    }

    pub async fn status(&self) -> Result<render::StatusView, CtlError> {
        let p = &self.proxy;
        Ok(render::StatusView {
            state: p.state().await.map_err(CtlError::call)?,
            status_text: p.status_text().await.map_err(CtlError::call)?,
            progress: p.progress().await.map_err(CtlError::call)?,
            board: p.board().await.map_err(CtlError::call)?,
            version: p.version().await.map_err(CtlError::call)?,
            last_error: p.last_error().await.map_err(CtlError::call)?,
        })
    }

    pub async fn diagnostics(&self) -> Result<HashMap<String, OwnedVariant>, CtlError> {
        self.proxy.diagnostics().await.map_err(CtlError::call)
    }

    /// Prints every signal tutord sends (one line each: member and arguments) for `seconds`
    /// (0: until interrupted). Subject to the bus policy like any client: only root, tutord
    /// and group `tutor` receive the tutor's signals (docs/dbus.md, "Access").
    pub async fn watch(&self, seconds: u64, mut on_line: impl FnMut(&str)) -> Result<(), CtlError> {
        use futures_util::StreamExt;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(api::NAME)
            .build()
            .map_err(CtlError::call)?;
        let conn = self.proxy.inner().connection();
        let mut stream = zbus::MessageStream::for_match_rule(rule, conn, None)
            .await
            .map_err(CtlError::call)?;
        let until = (seconds > 0)
            .then(|| tokio::time::Instant::now() + std::time::Duration::from_secs(seconds));
        loop {
            let next = match until {
                Some(t) => match tokio::time::timeout_at(t, stream.next()).await {
                    Ok(m) => m,
                    Err(_) => return Ok(()),
                },
                None => stream.next().await,
            };
            let Some(msg) = next else {
                return Err(CtlError::Call("the bus connection closed".into()));
            };
            let msg = msg.map_err(CtlError::call)?;
            let header = msg.header();
            let member = header.member().map_or("?", |m| m.as_str());
            let body = msg
                .body()
                .deserialize::<zbus::Structure>()
                .map_or_else(|_| "()".to_string(), |s| s.to_string());
            on_line(&format!("{member} {body}"));
        }
    }

    /// Asks a question and streams the answer's pieces to `on_piece`; returns the stats of
    /// `AnswerFinished`. Subscribes before asking, so no piece is missed.
    pub async fn ask(
        &self,
        question: &str,
        new_session: bool,
        on_piece: impl FnMut(&str),
    ) -> Result<HashMap<String, OwnedVariant>, CtlError> {
        self.turn(Question::Text(question), new_session, on_piece)
            .await
            .map(|(stats, _)| stats)
    }

    /// A spoken question from a WAV file's bytes (`ListenWav`); as `ask` otherwise, and
    /// also returns the spoken answer (sample rate, samples) when the daemon spoke one.
    pub async fn listen_wav(
        &self,
        wav: &[u8],
        new_session: bool,
        on_piece: impl FnMut(&str),
    ) -> Result<(HashMap<String, OwnedVariant>, Option<(u32, Vec<f32>)>), CtlError> {
        self.turn(Question::Wav(wav), new_session, on_piece).await
    }

    async fn turn(
        &self,
        question: Question<'_>,
        new_session: bool,
        mut on_piece: impl FnMut(&str),
    ) -> Result<(HashMap<String, OwnedVariant>, Option<(u32, Vec<f32>)>), CtlError> {
        use futures_util::StreamExt;
        let mut tokens = self.proxy.receive_token().await.map_err(CtlError::call)?;
        let mut speech = self.proxy.receive_speech().await.map_err(CtlError::call)?;
        let mut audio: Option<(u32, Vec<f32>)> = None;
        let mut finished = self
            .proxy
            .receive_answer_finished()
            .await
            .map_err(CtlError::call)?;
        let limit = answer_silence()?;
        let mut options = HashMap::new();
        if new_session {
            options.insert("new_session", zbus::Variant::from(true));
        }
        let turn = match question {
            Question::Text(q) => self.proxy.ask(q, options).await,
            Question::Wav(w) => self.proxy.listen_wav(w, options).await,
        }
        .map_err(CtlError::call)?;
        loop {
            // A slow board writes a few tokens a second; a minute without a piece or the end
            // means the daemon is gone or wedged.
            let silence = tokio::time::sleep(limit);
            tokio::select! {
                // Pieces and the end come on one connection in order; prefer pieces so the
                // last ones are printed before the stats.
                biased;
                _ = silence => {
                    return Err(CtlError::Call(format!(
                        "no piece of the answer for {} s",
                        limit.as_secs()
                    )));
                }
                Some(t) = tokens.next() => {
                    if let Ok(args) = t.args()
                        && args.turn_id == turn
                    {
                        on_piece(&args.piece);
                    }
                }
                Some(s) = speech.next() => {
                    if let Ok(args) = s.args()
                        && args.turn_id == turn
                    {
                        let (_, samples) = audio.get_or_insert((args.sample_rate, Vec::new()));
                        samples.extend(
                            args.pcm
                                .chunks_exact(2)
                                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0),
                        );
                    }
                }
                Some(f) = finished.next() => {
                    if let Ok(args) = f.args()
                        && args.turn_id == turn
                    {
                        return Ok((args.stats, audio));
                    }
                }
                else => return Err(CtlError::Call("the bus connection closed".into())),
            }
        }
    }

    /// `Plan()`: the machine and one dictionary per candidate, as sent.
    pub async fn plan(&self) -> Result<(plan::Dict, Vec<plan::Dict>), CtlError> {
        self.proxy.plan().await.map_err(CtlError::call)
    }

    /// `Rebenchmark()`: returns when the new measurement is planned with.
    pub async fn rebenchmark(&self) -> Result<(), CtlError> {
        self.proxy.rebenchmark().await.map_err(CtlError::call)
    }

    pub async fn set_log_level(&self, level: &str) -> Result<(), CtlError> {
        self.proxy
            .set_log_level(level)
            .await
            .map_err(CtlError::call)
    }
}

/// What a turn starts from.
enum Question<'a> {
    Text(&'a str),
    Wav(&'a [u8]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_silence_is_a_minute_or_the_variable() {
        assert_eq!(silence_from(None).unwrap().as_secs(), 60);
        assert_eq!(silence_from(Some("300")).unwrap().as_secs(), 300);
        assert_eq!(silence_from(Some(" 90 ")).unwrap().as_secs(), 90);
        for bad in ["0", "-5", "ten", ""] {
            let e = silence_from(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("TUTORCTL_ANSWER_SILENCE_S"), "{e}");
        }
    }
}
