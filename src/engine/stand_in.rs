//! An engine without a worker process, for the unit tests of the domains that use one (the
//! conversation, the planner's service): it speaks the same handle (commands in, `TurnEvent`s
//! and status out) and answers every turn with scripted pieces, one at a time, honouring
//! abort and `max_tokens` (a piece is a token; `count` takes a word for one). Test-only:
//! the daemon always runs the real worker.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Command, EngineHandle, EngineStatus, GenStats, ModelInfo, TurnEvent};
use crate::engine::BackendKind;

/// What the stand-in does.
#[derive(Debug, Clone)]
pub struct Script {
    /// The model it "loads", or why loading fails.
    pub load: Result<String, String>,
    /// The pieces of every answer.
    pub pieces: Vec<String>,
    /// The time each piece takes.
    pub piece_delay: Duration,
}

impl Script {
    /// Loads `model` and answers "a b c" quickly.
    pub fn answering(model: &str) -> Self {
        Self {
            load: Ok(model.to_string()),
            pieces: vec!["a".into(), " b".into(), " c".into()],
            piece_delay: Duration::from_millis(5),
        }
    }
}

/// The chats the stand-in was asked, in order.
pub type Asked = Arc<std::sync::Mutex<Vec<Vec<super::ChatMessage>>>>;

impl EngineHandle {
    /// A handle to a stand-in engine; `asked` records every chat it is given.
    pub fn stand_in(script: Script, asked: Asked) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let status = match &script.load {
            Ok(model) => EngineStatus {
                model: Some(ModelInfo {
                    backend: BackendKind::Cpu,
                    path: PathBuf::from(model),
                    file_bytes: 1000,
                    parameters: 1000,
                    context_length: 2048,
                    runtime: "stand-in".into(),
                    chat_format: "template".into(),
                }),
                ..EngineStatus::default()
            },
            Err(why) => EngineStatus {
                last_error: Some(why.clone()),
                gave_up: true,
                gave_up_because: Some(super::GaveUp::Load),
                ..EngineStatus::default()
            },
        };
        let (_status_tx, status_rx) = watch::channel(status);
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(script, rx, queued.clone(), asked, _status_tx));
        Self {
            commands,
            status: status_rx,
            queued,
        }
    }
}

struct Turn {
    chat: Vec<super::ChatMessage>,
    max_tokens: u32,
    events: mpsc::UnboundedSender<TurnEvent>,
}

async fn run(
    script: Script,
    mut rx: mpsc::UnboundedReceiver<Command>,
    queued: Arc<AtomicUsize>,
    asked: Asked,
    // Kept so that status readers never see a closed channel.
    _status: watch::Sender<EngineStatus>,
) {
    let mut waiting: VecDeque<Turn> = VecDeque::new();
    let finish = |t: &Turn, stats: GenStats| {
        queued.fetch_sub(1, Ordering::SeqCst);
        let _ = t.events.send(TurnEvent::Finished(stats));
    };
    loop {
        let Some(turn) = waiting.pop_front() else {
            match rx.recv().await {
                Some(Command::Generate {
                    chat,
                    sampling,
                    events,
                    ..
                }) => {
                    waiting.push_back(Turn {
                        chat,
                        max_tokens: sampling.max_tokens,
                        events,
                    });
                }
                Some(Command::Count { text, reply }) => {
                    let _ = reply.send(Ok(count(&text)));
                }
                Some(_) => {}
                None => return,
            }
            continue;
        };
        asked.lock().unwrap().push(turn.chat.clone());
        let mut aborted = false;
        let mut sent = 0u32;
        // One piece is one token: `max_tokens` cuts the script like a model's answer.
        let allowed = script.pieces.len().min(turn.max_tokens as usize);
        for piece in &script.pieces[..allowed] {
            tokio::time::sleep(script.piece_delay).await;
            // Commands that came meanwhile: an abort stops this turn and drops the waiting.
            while let Ok(cmd) = rx.try_recv() {
                match cmd {
                    Command::Generate {
                        chat,
                        sampling,
                        events,
                        ..
                    } => waiting.push_back(Turn {
                        chat,
                        max_tokens: sampling.max_tokens,
                        events,
                    }),
                    Command::AbortAll => aborted = true,
                    Command::Reset => {}
                    Command::Count { text, reply } => {
                        let _ = reply.send(Ok(count(&text)));
                    }
                }
            }
            if aborted {
                break;
            }
            let _ = turn.events.send(TurnEvent::Piece(piece.clone()));
            sent += 1;
        }
        let stats = GenStats {
            prompt_tokens: 10,
            generated_tokens: sent,
            decode_tokens_per_second: 100.0,
            aborted,
            truncated: !aborted && allowed < script.pieces.len(),
            ..GenStats::default()
        };
        finish(&turn, stats);
        if aborted {
            for t in waiting.drain(..) {
                finish(
                    &t,
                    GenStats {
                        aborted: true,
                        ..GenStats::default()
                    },
                );
            }
        }
    }
}

/// The stand-in's tokenizer: a word is a token.
fn count(text: &str) -> u32 {
    text.split_whitespace().count() as u32
}
