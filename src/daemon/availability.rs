//! Once booted, `State` and `StatusText` follow two things: what the tutor does (the
//! activity) and whether a model answers (the slot's availability). Without a model the
//! daemon is "degraded", never "ready": a tutor UI and `systemctl status` see why at once,
//! and the journal and `LastError` say it when it happens.

use std::sync::Arc;

use tokio::sync::watch;

use crate::engine::{Availability, EngineStatus, Slot};
use crate::notify::Notifier;
use crate::state::{Activity, State, Status};

/// The published state and status text for an activity and an availability, and why
/// nothing is stored when the state directory could not be written at start.
pub fn published(
    activity: &Activity,
    availability: &Availability,
    not_storing: Option<&str>,
) -> (State, String) {
    let doing = activity.state();
    match availability {
        Availability::Serving(_) => match not_storing {
            Some(why) if doing == State::Ready => (
                State::Degraded,
                format!("Degraded: answering without storing: {why}"),
            ),
            Some(why) => (doing, format!("Degraded: answering without storing: {why}")),
            None => (doing, "Ready".into()),
        },
        // Listening or speaking (`Speak`) go on without a model: say what the user notices.
        Availability::Loading(why) if doing == State::Ready => {
            (State::Loading, format!("Loading: {why}"))
        }
        Availability::Absent(why) if doing == State::Ready => (
            State::Degraded,
            format!("Degraded: no language model: {why}"),
        ),
        Availability::Loading(why) => (doing, format!("Loading: {why}")),
        Availability::Absent(why) => (doing, format!("Degraded: no language model: {why}")),
    }
}

/// Keeps `State`, `StatusText`, `LastError` and the systemd `STATUS=` line true until the
/// daemon stops. Started at the end of the boot (the boot's own steps own the state before).
pub async fn follow(
    status: watch::Sender<Status>,
    mut activity: watch::Receiver<Activity>,
    slot: Arc<Slot>,
    notifier: Notifier,
    not_storing: Option<Arc<str>>,
) {
    let mut slot_changes = slot.changes();
    let mut last: Option<Availability> = None;
    loop {
        let mut engine = slot.engine().map(|e| e.watch());
        let now = slot.availability();
        if last.as_ref() != Some(&now) {
            announce(&status, &notifier, last.as_ref(), &now);
            last = Some(now.clone());
        }
        let (state, text) = published(&activity.borrow_and_update(), &now, not_storing.as_deref());
        status.send_if_modified(|s| {
            let change = s.state != state || s.status_text != text;
            s.state = state;
            s.status_text = text;
            change
        });
        tokio::select! {
            r = activity.changed() => if r.is_err() { return },
            r = slot_changes.changed() => if r.is_err() { return },
            () = engine_changed(&mut engine) => {}
        }
    }
}

/// Waits for the engine's status to change; forever when there is no engine or its
/// supervisor has ended (the slot's change wakes the loop then).
async fn engine_changed(engine: &mut Option<watch::Receiver<EngineStatus>>) {
    if let Some(rx) = engine
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// A change of availability: the `STATUS=` line, the journal and `LastError`.
fn announce(
    status: &watch::Sender<Status>,
    notifier: &Notifier,
    before: Option<&Availability>,
    now: &Availability,
) {
    let (_, text) = published(&Activity::default(), now, None);
    notifier.status(&text);
    match now {
        Availability::Serving(model) => {
            if before.is_some() {
                tracing::info!("the tutor answers again, with {model}");
            }
        }
        Availability::Loading(_) => tracing::info!("{text}"),
        Availability::Absent(why) => {
            tracing::warn!(
                message_id = crate::events::ENGINE_FAILED,
                "no language model: {why}; the tutor cannot answer questions until one loads \
                 (tutorctl plan, SelectModel)"
            );
            status.send_modify(|s| s.last_error = format!("no language model: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_ready_without_a_model() {
        let idle = Activity::default();
        let serving = Availability::Serving("/m/a.gguf".into());
        assert_eq!(
            published(&idle, &serving, None),
            (State::Ready, "Ready".into())
        );
        let absent = Availability::Absent("not a GGUF file".into());
        assert_eq!(
            published(&idle, &absent, None),
            (
                State::Degraded,
                "Degraded: no language model: not a GGUF file".into()
            )
        );
        let loading = Availability::Loading("switching to the model x".into());
        assert_eq!(
            published(&idle, &loading, None),
            (State::Loading, "Loading: switching to the model x".into())
        );
    }

    #[test]
    fn a_model_that_answers_without_storing_is_degraded_and_says_why() {
        let serving = Availability::Serving("/m/a.gguf".into());
        let why = "database /var/lib/tutord/tutord.db: database or disk is full";
        assert_eq!(
            published(&Activity::default(), &serving, Some(why)),
            (
                State::Degraded,
                format!("Degraded: answering without storing: {why}")
            )
        );
        let thinking = Activity {
            thinking: 1,
            ..Activity::default()
        };
        assert_eq!(published(&thinking, &serving, Some(why)).0, State::Thinking);
    }

    #[test]
    fn what_the_user_notices_wins_but_the_text_says_why() {
        let speaking = Activity {
            speaking: 1,
            ..Activity::default()
        };
        let absent = Availability::Absent("none is configured".into());
        assert_eq!(
            published(&speaking, &absent, None),
            (
                State::Speaking,
                "Degraded: no language model: none is configured".into()
            )
        );
        let thinking = Activity {
            thinking: 1,
            ..Activity::default()
        };
        let serving = Availability::Serving("/m/a.gguf".into());
        assert_eq!(published(&thinking, &serving, None).0, State::Thinking);
    }
}
