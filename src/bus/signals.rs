//! What the daemon tells clients without being asked: the tutor's events as signals, and the
//! changes of the published status and of the planner's figures as `PropertiesChanged`. One
//! task each, reading channels; no domain knows about D-Bus.

use std::collections::HashMap;

use tokio::sync::{broadcast, watch};
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{OwnedVariant, Str};

use super::tutor::Tutor1;
use crate::plan::service::Figures;
use crate::state::Status;
use crate::tutor::{Event, TurnReport};

/// Sends the tutor's events as signals, in order, until the tutor is gone.
pub async fn forward_events(iface: InterfaceRef<Tutor1>, mut events: broadcast::Receiver<Event>) {
    let emitter = iface.signal_emitter().clone();
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} events were sent faster than D-Bus took them: dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let r = match ev {
            Event::Transcript { text, is_final } => {
                Tutor1::transcript(&emitter, &text, is_final).await
            }
            Event::Started { .. } => Ok(()),
            Event::Piece { turn, piece } => Tutor1::token(&emitter, &turn, &piece).await,
            Event::Speech {
                id,
                sample_rate,
                pcm,
            } => Tutor1::speech(&emitter, &id, sample_rate, &pcm).await,
            Event::Finished { turn, report } => {
                Tutor1::answer_finished(&emitter, &turn, stats(&report)).await
            }
            Event::SessionChanged => iface.get().await.session_changed(&emitter).await,
        };
        if let Err(e) = r {
            tracing::warn!("cannot emit a signal: {e}");
        }
    }
}

/// Emits `PropertiesChanged` for what changed in the daemon's status and the planner's
/// figures. Only the interface's shared read lock is taken, never the write lock.
pub async fn forward_properties(
    iface: InterfaceRef<Tutor1>,
    mut status: watch::Receiver<Status>,
    mut figures: watch::Receiver<Figures>,
) {
    let emitter = iface.signal_emitter().clone();
    let mut old_status = status.borrow_and_update().clone();
    let mut old_figures = figures.borrow_and_update().clone();
    loop {
        tokio::select! {
            r = status.changed() => {
                if r.is_err() {
                    return;
                }
                let new = status.borrow_and_update().clone();
                if let Err(e) = status_changed(&iface, &emitter, &old_status, &new).await {
                    tracing::warn!("cannot emit PropertiesChanged: {e}");
                }
                old_status = new;
            }
            r = figures.changed() => {
                if r.is_err() {
                    return;
                }
                let new = figures.borrow_and_update().clone();
                if let Err(e) = figures_changed(&iface, &emitter, &old_figures, &new).await {
                    tracing::warn!("cannot emit PropertiesChanged: {e}");
                }
                old_figures = new;
            }
        }
    }
}

async fn status_changed(
    iface: &InterfaceRef<Tutor1>,
    e: &SignalEmitter<'_>,
    old: &Status,
    new: &Status,
) -> zbus::Result<()> {
    let this = iface.get().await;
    if old.state != new.state {
        this.state_changed(e).await?;
    }
    if old.status_text != new.status_text {
        this.status_text_changed(e).await?;
    }
    if old.progress != new.progress {
        this.progress_changed(e).await?;
    }
    if old.board != new.board {
        this.board_changed(e).await?;
    }
    if old.last_error != new.last_error {
        this.last_error_changed(e).await?;
    }
    if old.last_tokens_per_second != new.last_tokens_per_second {
        this.last_tokens_per_second_changed(e).await?;
    }
    if old.last_time_to_first_token != new.last_time_to_first_token {
        this.last_time_to_first_token_changed(e).await?;
    }
    Ok(())
}

async fn figures_changed(
    iface: &InterfaceRef<Tutor1>,
    e: &SignalEmitter<'_>,
    old: &Figures,
    new: &Figures,
) -> zbus::Result<()> {
    let this = iface.get().await;
    if old.bandwidth_measured != new.bandwidth_measured {
        this.bandwidth_measured_changed(e).await?;
    }
    if old.bandwidth_theoretical != new.bandwidth_theoretical {
        this.bandwidth_theoretical_changed(e).await?;
    }
    if old.predicted_tokens_per_second != new.predicted_tokens_per_second {
        this.predicted_tokens_per_second_changed(e).await?;
    }
    if old.model != new.model {
        this.model_changed(e).await?;
    }
    if old.model_bytes != new.model_bytes {
        this.model_bytes_changed(e).await?;
    }
    if old.backend != new.backend {
        this.backend_changed(e).await?;
    }
    Ok(())
}

/// `AnswerFinished`'s stats, as documented on the signal.
fn stats(r: &TurnReport) -> HashMap<String, OwnedVariant> {
    let o = &r.outcome;
    let s = &o.stats;
    let mut stats: HashMap<String, OwnedVariant> = HashMap::new();
    if let Some(sp) = &r.spoken {
        stats.insert("spoken_seconds".into(), sp.audio.as_secs_f64().into());
        stats.insert("tts_seconds".into(), sp.synthesis.as_secs_f64().into());
        if let Some(e) = sp.errors.first() {
            stats.insert("tts_error".into(), Str::from(e.clone()).into());
        }
    }
    if let (Some(h), Some(to_first_token)) = (&r.heard, r.end_of_speech_to_first_token()) {
        if let Some(secs) = r.end_of_speech_to_first_audio() {
            stats.insert("end_of_speech_to_first_audio".into(), secs.into());
        }
        stats.insert("transcript".into(), Str::from(h.text.clone()).into());
        stats.insert("speech_seconds".into(), h.speech.as_secs_f64().into());
        stats.insert(
            "end_of_speech_to_transcript".into(),
            h.to_transcript.as_secs_f64().into(),
        );
        stats.insert("stt_real_time_factor".into(), h.stt_rtf.into());
        stats.insert("end_of_speech_to_first_token".into(), to_first_token.into());
    }
    stats.insert("ok".into(), o.error.is_none().into());
    if let Some(e) = &o.error {
        stats.insert("error".into(), Str::from(e.to_string()).into());
        stats.insert(
            "error_name".into(),
            Str::from("org.tutord.Tutor1.Error.EngineFailed").into(),
        );
    }
    stats.insert("aborted".into(), s.aborted.into());
    stats.insert("truncated".into(), s.truncated.into());
    stats.insert("answer".into(), Str::from(o.answer.clone()).into());
    stats.insert("prompt_tokens".into(), s.prompt_tokens.into());
    stats.insert("reused_tokens".into(), s.reused_tokens.into());
    stats.insert("window_left_out".into(), s.window_left_out.into());
    stats.insert("generated_tokens".into(), s.generated_tokens.into());
    stats.insert("time_to_first_token".into(), o.time_to_first_token.into());
    stats.insert(
        "tokens_per_second".into(),
        s.decode_tokens_per_second.into(),
    );
    stats.insert(
        "prompt_tokens_per_second".into(),
        s.prompt_tokens_per_second.into(),
    );
    stats.insert("peak_rss_bytes".into(), s.peak_rss_bytes.into());
    stats
}
