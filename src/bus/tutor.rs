//! `org.tutord.Tutor1` on `/org/tutord/Tutor1`: the interface the tutor UI and `tutorctl`
//! use. Methods are thin: they read the daemon's context or hand work to it, and return.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use zbus::message::Header;
use zbus::object_server::{InterfaceRef, SignalEmitter};
use zbus::{OwnedVariant, Str, Variant, interface};

use super::TutorError;
use super::voice::{Mouth, Voice};
use crate::config::LogLevel;
use crate::daemon::Context;
use crate::diagnostics::Value;
use crate::state::State;
use crate::tutor::{AskError, AskOptions, TurnOutcome, TurnSink};
use crate::voice::live::{LiveError, LiveHandle};
use crate::voice::pipeline::Heard;
use crate::voice::speaker::Spoken;

/// What the daemon publishes as properties; changed only through [`Tutor::update`].
#[derive(Debug, Clone)]
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

/// The interface object.
pub struct Tutor {
    ctx: Arc<Context>,
    status: Status,
}

impl Tutor {
    /// Refuses callers that may not change the system (see `bus::access`).
    async fn require_admin(
        &self,
        conn: &zbus::Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<(), TutorError> {
        super::access::require_admin(conn, header, &self.ctx.config.daemon.admin_group, method)
            .await
    }

    /// After a `SelectModel` whose model did not load: loads `serving` (what served before)
    /// again; returns it when it is back. Nothing is queued meanwhile: the failed engine
    /// refuses questions at once.
    async fn restore(&self, serving: Option<String>) -> Option<String> {
        let serving = serving?;
        let mut engine = match self.ctx.engine_for(&serving) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot go back to {serving}: {e}");
                return None;
            }
        };
        if let Err(e) = self.ctx.tutor.replace_engine(Ok(engine.clone())) {
            tracing::error!("cannot go back to {serving}: {e}");
            return None;
        }
        let back = engine.wait_settled().await.model.is_some();
        tracing::warn!(
            message_id = crate::events::ENGINE_FAILED,
            "the selected model did not load; {} {serving}",
            if back { "back on" } else { "could not reload" }
        );
        back.then_some(serving)
    }

    /// The live voice loop, or `NotReady` saying why there is none.
    fn live(&self) -> Result<LiveHandle, TutorError> {
        self.ctx
            .audio_lock()
            .live
            .clone()
            .map_err(|why| TutorError::NotReady(format!("no microphone: {why}")))
    }

    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            status: Status::default(),
        }
    }

    /// Changes the published status and emits `PropertiesChanged` for what changed. The
    /// change is made under the interface's write lock, so concurrent updates (the boot
    /// reporter, a finished answer, the activity publisher) never undo each other. Never
    /// call it from inside an interface method (the method holds the read lock).
    pub async fn update(
        iface: &InterfaceRef<Tutor>,
        change: impl FnOnce(&mut Status),
    ) -> zbus::Result<()> {
        let mut this = iface.get_mut().await;
        let old = this.status.clone();
        change(&mut this.status);
        let emitter = iface.signal_emitter();
        if old.state != this.status.state {
            this.state_changed(emitter).await?;
        }
        if old.status_text != this.status.status_text {
            this.status_text_changed(emitter).await?;
        }
        if old.progress != this.status.progress {
            this.progress_changed(emitter).await?;
        }
        if old.board != this.status.board {
            this.board_changed(emitter).await?;
        }
        if old.last_error != this.status.last_error {
            this.last_error_changed(emitter).await?;
        }
        if old.last_tokens_per_second != this.status.last_tokens_per_second {
            this.last_tokens_per_second_changed(emitter).await?;
        }
        if old.last_time_to_first_token != this.status.last_time_to_first_token {
            this.last_time_to_first_token_changed(emitter).await?;
        }

        Ok(())
    }

    /// The published status, for the daemon to derive the next one from.
    pub fn status(&self) -> &Status {
        &self.status
    }
}

/// The tutor appliance: its state, diagnostics, and (as the product grows) the tutor itself.
#[interface(name = "org.tutord.Tutor1")]
impl Tutor {
    /// Everything a person diagnosing the appliance wants in one call: version, pid, uptime,
    /// board, state, state directory and database, boot counts, watchdog and log settings.
    /// Keys are stable lowercase words with underscores; values are strings or numbers.
    async fn diagnostics(&self) -> HashMap<String, OwnedVariant> {
        self.ctx
            .diagnostics(&self.status)
            .into_iter()
            .map(|(k, v)| (k, to_variant(v)))
            .collect()
    }

    /// Changes the log verbosity until the next restart: `error`, `warn`, `info`, `debug` or
    /// `trace`. Fails with `InvalidArgument` for anything else; `AccessDenied` for a caller
    /// other than root or `[daemon] admin_group`.
    async fn set_log_level(
        &self,
        level: &str,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), TutorError> {
        self.require_admin(conn, &header, "SetLogLevel").await?;
        let parsed = LogLevel::parse(level).ok_or_else(|| TutorError::bad_log_level(level))?;
        self.ctx
            .set_log_level(parsed)
            .map_err(|e| TutorError::ZBus(zbus::Error::Failure(e)))
    }

    /// Asks the tutor a question. Returns a turn id at once; the answer streams as `Token`
    /// signals and ends with `AnswerFinished`. Options: `new_session` (b) forgets the
    /// conversation first; `max_tokens` (u) and `temperature` (d) override the config for
    /// this answer. Questions asked while one is answered wait their turn, up to 4; then
    /// `Busy`. `NotReady` when no model is loaded, `InvalidArgument` for an empty or
    /// oversized question or an unknown option.
    async fn ask(
        &self,
        text: &str,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<String, TutorError> {
        let options = parse_ask_options(&options)?;
        start_turn(&self.ctx, text, options, None)
    }

    /// A spoken question: `wav` is a WAV file's bytes (16 kHz mono 16-bit PCM, at most 120
    /// s). Voice activity detection finds the speech, whisper transcribes it (a
    /// `Transcript` signal), and the text is asked as by `Ask` (same options); returns the
    /// turn id. The turn's `AnswerFinished` adds `transcript` and the stage timings
    /// `speech_seconds`, `end_of_speech_to_transcript`, `end_of_speech_to_first_token`,
    /// `stt_real_time_factor`. `InvalidArgument` for a malformed WAV, a wrong format, an
    /// empty or too long one, or no speech in it; `NotReady` while the speech model is
    /// missing or loading.
    async fn listen_wav(
        &self,
        wav: Vec<u8>,
        options: HashMap<String, OwnedVariant>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, TutorError> {
        let options = parse_ask_options(&options)?;
        let heard = self.ctx.hear(wav).await.map_err(|e| {
            use crate::voice::pipeline::VoiceError as V;
            match e {
                V::NotReady(_) => TutorError::NotReady(e.to_string()),
                V::Stt(_) => TutorError::Failed(e.to_string()),
                V::Wav(_) | V::NoSpeech { .. } | V::NoWords => {
                    TutorError::InvalidArgument(e.to_string())
                }
            }
        })?;
        Self::transcript(&emitter, &heard.text, true).await?;
        let text = heard.text.clone();
        start_turn(&self.ctx, &text, options, Some(Voice::signals_only(heard)))
    }

    /// Push-to-talk: starts taking a question from the microphone. It ends at the endpoint
    /// (`[voice] endpoint_silence_ms` of silence) or at `StopListening()`; then whisper
    /// transcribes it (a `Transcript` signal) and it is asked like `ListenWav`'s, the
    /// answer spoken on the loudspeaker. During an answer it interrupts it (barge-in).
    /// Listening stops by itself when no speech starts within 10 s. `State` is
    /// `listening` meanwhile. `NotReady` when there is no microphone (the error says why).
    async fn listen(&self) -> Result<(), TutorError> {
        self.live()?.listen().await.map_err(live_error)
    }

    /// Ends the question being taken now (push-to-talk released). `InvalidArgument` when
    /// not listening or when no speech was heard.
    async fn stop_listening(&self) -> Result<(), TutorError> {
        self.live()?.stop_listening().await.map_err(live_error)
    }

    /// Says `text` (1 to 2000 bytes) with the tutor's voice: `Speech` signals whose id
    /// (returned, `speak-N`) stands for the turn id, and the loudspeaker when there is one.
    /// `NotReady` when no voice is loaded, `Busy` while an answer is being written.
    async fn speak(
        &self,
        text: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, TutorError> {
        if text.trim().is_empty() || text.len() > 2000 {
            return Err(TutorError::InvalidArgument(format!(
                "the text must be 1 to 2000 bytes, not {}",
                text.len()
            )));
        }
        if self.ctx.tutor.busy() {
            return Err(TutorError::Busy(
                "an answer is being written; speak when the tutor is idle".into(),
            ));
        }
        super::voice::speak(&self.ctx, &emitter, text).map_err(TutorError::NotReady)
    }

    /// A sentence of a spoken answer: mono 16-bit little-endian PCM at `sample_rate` Hz,
    /// in order. The turn's `AnswerFinished` comes after its last sentence.
    #[zbus(signal)]
    pub(crate) async fn speech(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        sample_rate: u32,
        pcm: &[u8],
    ) -> zbus::Result<()>;

    /// What speech recognition heard; `final` is true for the finished transcript of an
    /// utterance (the text that is asked).
    #[zbus(signal)]
    pub(crate) async fn transcript(
        emitter: &SignalEmitter<'_>,
        text: &str,
        r#final: bool,
    ) -> zbus::Result<()>;

    /// Ends the current session and starts one on `subject` ("" = the configured subject);
    /// returns its id. The tutor's conversation starts afresh. `Busy` while questions are
    /// pending; `InvalidArgument` for a subject over 200 bytes.
    async fn start_session(
        &self,
        subject: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<String, TutorError> {
        let s = self.ctx.start_session(subject).map_err(session_error)?;
        // Through this method's own emitter, not the InterfaceRef (see `rebenchmark`).
        self.session_changed(&emitter).await?;
        Ok(s.id.to_string())
    }

    /// Ends the current session; the next question starts a new one on the configured
    /// subject. `Busy` while questions are pending.
    async fn end_session(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), TutorError> {
        self.ctx.end_session().map_err(session_error)?;
        self.session_changed(&emitter).await?;
        Ok(())
    }

    /// A session's turns, oldest first, one dictionary each: `turn_id`, `source` (text or
    /// voice), `question`, `answer` (absent while unanswered or when it never finished),
    /// `asked_at`, `finished_at` (ISO 8601 UTC), `time_to_first_token`,
    /// `tokens_per_second`, `generated_tokens`, `aborted`, `error`. `InvalidArgument` for
    /// an unknown session id.
    async fn history(
        &self,
        session_id: &str,
    ) -> Result<Vec<HashMap<String, OwnedVariant>>, TutorError> {
        let turns = self.ctx.history(session_id).map_err(session_error)?;
        Ok(turns.into_iter().map(turn_entry).collect())
    }

    /// Stops the answer being generated and drops the questions waiting; each ends with
    /// `AnswerFinished` whose stats have `aborted` = true.
    async fn abort(&self) {
        self.ctx.tutor.abort();
    }

    /// Switches to the catalog model `name` (or a model file path): restarts the engine
    /// worker with it and returns once it is loaded. The conversation starts afresh.
    /// `UnknownModel` for a name not in the catalog or not fetched, `Busy` while questions
    /// are pending, `EngineFailed` when the model does not load (the daemon then has no
    /// model until another is selected); `AccessDenied` for a caller other than root or
    /// `[daemon] admin_group`.
    async fn select_model(
        &self,
        name: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), TutorError> {
        self.require_admin(conn, &header, "SelectModel").await?;
        // The model loaded now (by catalog name, else its file), to go back to should `name`
        // not load: a bad call must not leave the appliance without a tutor.
        let serving = self.ctx.model().map(|m| {
            let by_name = self.ctx.current_model_lock().clone().map(|(n, _)| n);
            by_name.unwrap_or_else(|| m.path.display().to_string())
        });
        let mut engine = self
            .ctx
            .engine_for(name)
            .map_err(|e| TutorError::UnknownModel(e.to_string()))?;
        self.ctx
            .tutor
            .replace_engine(Ok(engine.clone()))
            .map_err(|e| TutorError::Busy(e.to_string()))?;
        let settled = engine.wait_settled().await;
        let result = match settled.model {
            Some(m) => {
                tracing::info!(model = %m.path.display(), "switched to model {name}");
                Ok(())
            }
            None => {
                let why = settled
                    .last_error
                    .unwrap_or_else(|| "the model did not load".into());
                Err(TutorError::EngineFailed(
                    match self.restore(serving).await {
                        Some(back) => format!("{why}; back on {back}"),
                        None => why,
                    },
                ))
            }
        };
        self.backend_changed(&emitter).await?;
        self.model_changed(&emitter).await?;
        self.model_bytes_changed(&emitter).await?;
        result
    }

    /// Runs the memory and compute benchmark again now (ignoring the cached result), plans
    /// again and returns when done (about `[bench] budget_ms` + `compute_budget_ms`). The
    /// loaded model stays: `Plan()` shows whether the plan would now choose another, and
    /// `SelectModel` switches. `Busy` while an answer is being written (the benchmark would
    /// measure the answer, not the bus); `AccessDenied` for a caller other than root or
    /// `[daemon] admin_group`.
    async fn rebenchmark(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), TutorError> {
        self.require_admin(conn, &header, "Rebenchmark").await?;
        if self.ctx.tutor.busy() {
            return Err(TutorError::Busy(
                "an answer is being written; benchmark when the tutor is idle".into(),
            ));
        }
        self.ctx.benchmark(true).await;
        self.ctx.plan();
        // Through our own emitter: this method holds the interface's read lock, so going
        // through `InterfaceRef` (which may need the write lock) would deadlock.
        self.bandwidth_measured_changed(&emitter).await?;
        self.bandwidth_theoretical_changed(&emitter).await?;
        self.predicted_tokens_per_second_changed(&emitter).await?;
        Ok(())
    }

    /// The plan: the machine as measured (bandwidths in bytes/s, compute in op/s, the
    /// targets, the calibrated efficiencies, the choice and its reason) and one dictionary
    /// per (model, backend) candidate (predicted tokens/s, first-token seconds, which roof
    /// binds, memory needed, whether it fits and is fetched, whether it was chosen).
    async fn plan(
        &self,
    ) -> (
        HashMap<String, OwnedVariant>,
        Vec<HashMap<String, OwnedVariant>>,
    ) {
        let (machine, candidates) = self.ctx.plan_report();
        let dict = |v: Vec<(String, Value)>| {
            v.into_iter()
                .map(|(k, v)| (k, to_variant(v)))
                .collect::<HashMap<_, _>>()
        };
        (dict(machine), candidates.into_iter().map(dict).collect())
    }

    /// The catalog: one `(name, quantization, parameters, file_bytes, present, plan)` per
    /// model; `present` is true when its file is in the models folder with the right size;
    /// `plan` is the planner's view: `backend`, `predicted_tokens_per_second`,
    /// `predicted_first_token_seconds`, `binding` (bandwidth|compute), `memory_needed`,
    /// `fits`, `chosen` and `why` (a sentence: why it was or was not chosen).
    async fn list_models(
        &self,
    ) -> Vec<(
        String,
        String,
        u64,
        u64,
        bool,
        HashMap<String, OwnedVariant>,
    )> {
        let dir = &self.ctx.config.models.dir;
        self.ctx
            .catalog
            .models
            .iter()
            .map(|m| {
                let present = matches!(
                    crate::models::presence(m, dir, false),
                    Ok(crate::models::Presence::Verified
                        | crate::models::Presence::Unverified
                        | crate::models::Presence::Rechecked)
                );
                let plan = self
                    .ctx
                    .model_verdicts(&m.name)
                    .into_iter()
                    .map(|(k, v)| (k, to_variant(v)))
                    .collect();
                (
                    m.name.clone(),
                    m.quantization.clone(),
                    m.parameters,
                    m.file_bytes,
                    present,
                    plan,
                )
            })
            .collect()
    }

    /// A piece of the answer to `turn_id`, as soon as the model produced it.
    #[zbus(signal)]
    async fn token(emitter: &SignalEmitter<'_>, turn_id: &str, piece: &str) -> zbus::Result<()>;

    /// The answer to `turn_id` is complete (or failed, or was aborted). Stats: `ok` (b),
    /// `error` (s, when not ok), `aborted` (b), `answer` (s), `prompt_tokens` (u, processed
    /// for this turn), `reused_tokens` (u, taken from the kept conversation), `generated_tokens`
    /// (u), `time_to_first_token` (d, s from Ask), `tokens_per_second` (d, decode),
    /// `prompt_tokens_per_second` (d), `peak_rss_bytes` (t, of the engine worker).
    #[zbus(signal)]
    async fn answer_finished(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        stats: HashMap<String, OwnedVariant>,
    ) -> zbus::Result<()>;

    /// The engine running the model: `cpu`, `cuda`, `npu`, or empty when none is loaded.
    #[zbus(property)]
    async fn backend(&self) -> String {
        self.ctx
            .model()
            .map(|m| m.backend.as_str().to_string())
            .unwrap_or_default()
    }

    /// The loaded model's file, or empty.
    #[zbus(property)]
    async fn model(&self) -> String {
        self.ctx
            .model()
            .map(|m| m.path.display().to_string())
            .unwrap_or_default()
    }

    /// Size of the loaded model's file in bytes (what each token reads), 0 when none.
    #[zbus(property)]
    async fn model_bytes(&self) -> u64 {
        self.ctx.model().map_or(0, |m| m.file_bytes)
    }

    /// Decode speed of the last answer, tokens per second.
    #[zbus(property)]
    async fn last_tokens_per_second(&self) -> f64 {
        self.status.last_tokens_per_second
    }

    /// The current tutoring session's id ("" before the first question or after
    /// `EndSession`).
    #[zbus(property)]
    async fn session(&self) -> String {
        self.ctx
            .current_session()
            .map_or(String::new(), |s| s.id.to_string())
    }

    /// Read bandwidth the boot benchmark measured on the inference cores, bytes/s (0 before
    /// it ran).
    #[zbus(property)]
    async fn bandwidth_measured(&self) -> f64 {
        self.ctx.figures().bandwidth_measured
    }

    /// DDR clock × 2 × bus width ÷ 8, bytes/s; 0 when the board does not tell its DDR clock.
    #[zbus(property)]
    async fn bandwidth_theoretical(&self) -> f64 {
        self.ctx.figures().bandwidth_theoretical
    }

    /// The planner's decode speed for the loaded model, tokens/s (0 for a model outside the
    /// catalog); calibrated after every answer.
    #[zbus(property)]
    async fn predicted_tokens_per_second(&self) -> f64 {
        self.ctx.figures().predicted_tokens_per_second
    }

    /// Time from `Ask` to the first piece of the last answer, seconds.
    #[zbus(property)]
    async fn last_time_to_first_token(&self) -> f64 {
        self.status.last_time_to_first_token
    }

    /// What the daemon is doing, one lowercase word: `booting`, `tuning`, `benchmarking`,
    /// `loading`, `ready`, `listening`, `thinking`, `speaking` or `error`.
    #[zbus(property)]
    async fn state(&self) -> String {
        self.status.state.as_str().to_string()
    }

    /// The last status line, as systemd's `StatusText` shows it (e.g. "Ready").
    #[zbus(property)]
    async fn status_text(&self) -> String {
        self.status.status_text.clone()
    }

    /// Progress of the current boot step or long operation, from 0.0 to 1.0.
    #[zbus(property)]
    async fn progress(&self) -> f64 {
        self.status.progress
    }

    /// tutord's version.
    #[zbus(property)]
    async fn version(&self) -> String {
        crate::VERSION.to_string()
    }

    /// The board tutord detected: `rk3588`, `rk3576`, `orin-nano`, `generic`, or `unknown`
    /// while booting.
    #[zbus(property)]
    async fn board(&self) -> String {
        self.status.board.clone()
    }

    /// The last error that stopped an operation, empty when there was none.
    #[zbus(property)]
    async fn last_error(&self) -> String {
        self.status.last_error.clone()
    }
}

/// Reads `Ask`'s options, refusing unknown keys and wrong types by name.
fn parse_ask_options(o: &HashMap<String, OwnedVariant>) -> Result<AskOptions, TutorError> {
    let mut out = AskOptions::default();
    for (k, v) in o {
        let bad = |want: &str| {
            TutorError::InvalidArgument(format!(
                "option '{}' must be {want}",
                k.chars().take(64).collect::<String>()
            ))
        };
        match (k.as_str(), &**v) {
            ("new_session", Variant::Bool(b)) => out.new_session = *b,
            ("new_session", _) => return Err(bad("a boolean (b)")),
            ("max_tokens", Variant::U32(n)) if (1..=4096).contains(n) => out.max_tokens = Some(*n),
            ("max_tokens", Variant::I32(n)) if (1..=4096).contains(n) => {
                out.max_tokens = Some(*n as u32)
            }
            ("max_tokens", _) => return Err(bad("an integer from 1 to 4096 (u)")),
            ("temperature", Variant::F64(t)) if (0.0..=2.0).contains(t) => {
                out.temperature = Some(*t)
            }
            ("temperature", _) => return Err(bad("a number from 0.0 to 2.0 (d)")),
            _ => {
                return Err(TutorError::InvalidArgument(format!(
                    "unknown option '{}': use new_session, max_tokens or temperature",
                    k.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(out)
}

/// What a turn reports, in order, to the task that turns it into signals.
enum SinkEvent {
    Started,
    Piece(String, String),
    Finished(String, TurnOutcome),
}

/// Sends a turn's results as D-Bus signals and property changes. The tutor calls it from
/// its turn task; the emission runs in its own task, in order.
struct BusSink {
    tx: mpsc::UnboundedSender<SinkEvent>,
}

impl BusSink {
    /// `voice`: the answer is also spoken, sentence by sentence as it is written.
    fn start(ctx: Arc<Context>, mut voice: Option<Voice>) -> Arc<dyn TurnSink> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let Some(iface) = ctx.iface() else {
                return;
            };
            let emitter = iface.signal_emitter().clone();
            let mut mouth: Option<Mouth> = None;
            let mut started = false;
            while let Some(ev) = rx.recv().await {
                let result = match ev {
                    SinkEvent::Started => {
                        started = true;
                        ctx.activity(|a| a.thinking += 1);
                        Ok(())
                    }
                    SinkEvent::Piece(turn, piece) => {
                        if let Some(v) = &voice
                            && mouth.is_none()
                        {
                            mouth = Mouth::start(
                                &ctx,
                                &emitter,
                                &turn,
                                v.speaker.clone(),
                                v.cancel.clone(),
                            );
                        }
                        if let Some(m) = &mut mouth {
                            m.piece(&piece);
                        }
                        Tutor::token(&emitter, &turn, &piece).await
                    }
                    SinkEvent::Finished(turn, outcome) => {
                        ctx.record_answer(&turn, &outcome);
                        if outcome.error.is_none() {
                            ctx.calibrate(&outcome.stats);
                            crate::daemon::publish_figures(&iface).await;
                        }
                        // A spoken answer ends when its last sentence is spoken, so the
                        // client has all the audio when AnswerFinished comes.
                        let spoken = match mouth.take() {
                            Some(m) => Some(m.finish().await),
                            None => None,
                        };
                        let heard = voice.as_mut().and_then(|v| v.heard.take());
                        let r = finish(&iface, &emitter, &turn, &outcome, heard, spoken).await;
                        // Thinking ends with the speaking, so State goes thinking → speaking
                        // → ready without a ready in between.
                        if std::mem::take(&mut started) {
                            ctx.activity(|a| a.thinking = a.thinking.saturating_sub(1));
                        }
                        if let Some(done) = voice.as_mut().and_then(|v| v.done.take()) {
                            let _ = done.send(());
                        }
                        r
                    }
                };
                if let Err(e) = result {
                    tracing::warn!("cannot emit a turn's signal: {e}");
                }
            }
        });
        Arc::new(BusSink { tx })
    }
}

impl TurnSink for BusSink {
    fn started(&self, _turn: &str) {
        let _ = self.tx.send(SinkEvent::Started);
    }
    fn piece(&self, turn: &str, piece: &str) {
        let _ = self.tx.send(SinkEvent::Piece(turn.into(), piece.into()));
    }
    fn finished(&self, turn: &str, outcome: &TurnOutcome) {
        let _ = self
            .tx
            .send(SinkEvent::Finished(turn.into(), outcome.clone()));
    }
}

async fn finish(
    iface: &InterfaceRef<Tutor>,
    emitter: &SignalEmitter<'_>,
    turn: &str,
    o: &TurnOutcome,
    heard: Option<Heard>,
    spoken: Option<Spoken>,
) -> zbus::Result<()> {
    let s = &o.stats;
    let mut stats: HashMap<String, OwnedVariant> = HashMap::new();
    if let Some(sp) = &spoken {
        stats.insert("spoken_seconds".into(), sp.audio.as_secs_f64().into());
        stats.insert("tts_seconds".into(), sp.synthesis.as_secs_f64().into());
        if let Some(e) = sp.errors.first() {
            stats.insert("tts_error".into(), Str::from(e.clone()).into());
        }
    }
    if let Some(h) = &heard {
        let first_audio = spoken
            .as_ref()
            .and_then(|sp| sp.first_audio)
            .map(|at| at.duration_since(h.received).as_secs_f64());
        if let Some(secs) = first_audio {
            stats.insert("end_of_speech_to_first_audio".into(), secs.into());
        }
        let to_first_token = h.to_transcript.as_secs_f64() + o.time_to_first_token;
        tracing::info!(
            turn,
            end_of_speech_to_transcript = h.to_transcript.as_secs_f64(),
            end_of_speech_to_first_token = to_first_token,
            end_of_speech_to_first_audio = first_audio.unwrap_or(-1.0),
            "spoken turn {turn}: end of speech → transcript {:.2} s → first token {:.2} s → first audio {}",
            h.to_transcript.as_secs_f64(),
            to_first_token,
            first_audio.map_or("none".to_string(), |s| format!("{s:.2} s"))
        );
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
    stats.insert("answer".into(), Str::from(o.answer.clone()).into());
    stats.insert("prompt_tokens".into(), s.prompt_tokens.into());
    stats.insert("reused_tokens".into(), s.reused_tokens.into());
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
    match &o.error {
        Some(e) => tracing::warn!(turn, "answer failed: {e}"),
        None => tracing::info!(
            turn,
            prompt_tokens = s.prompt_tokens,
            reused_tokens = s.reused_tokens,
            generated_tokens = s.generated_tokens,
            time_to_first_token = o.time_to_first_token,
            tokens_per_second = s.decode_tokens_per_second,
            aborted = s.aborted,
            "answered {turn}: {} tokens at {:.1} tok/s, first after {:.3} s",
            s.generated_tokens,
            s.decode_tokens_per_second,
            o.time_to_first_token
        ),
    }
    let update = Tutor::update(iface, |status| {
        if let Some(e) = &o.error {
            status.last_error = e.to_string();
        } else if !o.stats.aborted {
            status.last_tokens_per_second = o.stats.decode_tokens_per_second;
            status.last_time_to_first_token = o.time_to_first_token;
        }
    });
    update.await?;
    Tutor::answer_finished(emitter, turn, stats).await
}

/// Starts a turn for `text` (typed or heard) and stores its question.
pub(crate) fn start_turn(
    ctx: &Arc<Context>,
    text: &str,
    options: AskOptions,
    voice: Option<Voice>,
) -> Result<String, TutorError> {
    let source = if voice.is_some() { "voice" } else { "text" };
    let sink = BusSink::start(ctx.clone(), voice);
    let new_session = options.new_session;
    let turn = ctx.tutor.ask(text, options, sink).map_err(|e| match e {
        AskError::Invalid(m) => TutorError::InvalidArgument(m),
        AskError::NotReady(_) => TutorError::NotReady(e.to_string()),
        AskError::Busy(_) => TutorError::Busy(e.to_string()),
    })?;
    // The answer is given even when the store fails (a full disk): the error is logged.
    match ctx.session_for_question(new_session) {
        Ok(session) => ctx.record_question(session, &turn, source, text.trim()),
        Err(e) => tracing::error!("cannot store {turn}: {e}"),
    }
    Ok(turn)
}

fn live_error(e: LiveError) -> TutorError {
    match e {
        LiveError::NoMicrophone(_) | LiveError::Stopped => TutorError::NotReady(e.to_string()),
        LiveError::NotListening | LiveError::NothingHeard => {
            TutorError::InvalidArgument(e.to_string())
        }
    }
}

fn session_error(e: crate::tutor::session::SessionError) -> TutorError {
    use crate::tutor::session::SessionError as E;
    match e {
        E::Invalid(m) => TutorError::InvalidArgument(m),
        E::Unknown(_) => TutorError::InvalidArgument(e.to_string()),
        E::Busy(b) => TutorError::Busy(b.to_string()),
        E::Store(s) => TutorError::StoreFailed(s.to_string()),
    }
}

fn turn_entry(t: crate::store::TurnRow) -> HashMap<String, OwnedVariant> {
    let mut e: HashMap<String, OwnedVariant> = HashMap::new();
    let s = |v: String| OwnedVariant::from(Str::from(v));
    e.insert("turn_id".into(), s(t.turn_id));
    e.insert("source".into(), s(t.source));
    e.insert("question".into(), s(t.question));
    if let Some(a) = t.answer {
        e.insert("answer".into(), s(a));
    }
    e.insert("asked_at".into(), s(t.asked_at));
    if let Some(f) = t.finished_at {
        e.insert("finished_at".into(), s(f));
    }
    if let Some(x) = t.time_to_first_token {
        e.insert("time_to_first_token".into(), x.into());
    }
    if let Some(x) = t.tokens_per_second {
        e.insert("tokens_per_second".into(), x.into());
    }
    if let Some(x) = t.generated_tokens {
        e.insert("generated_tokens".into(), x.into());
    }
    e.insert("aborted".into(), t.aborted.into());
    if let Some(x) = t.error {
        e.insert("error".into(), s(x));
    }
    e
}

fn to_variant(v: Value) -> OwnedVariant {
    match v {
        Value::Str(s) => OwnedVariant::from(Str::from(s)),
        Value::U64(n) => OwnedVariant::from(n),
        Value::I64(n) => OwnedVariant::from(n),
        Value::F64(n) => OwnedVariant::from(n),
        Value::Bool(b) => OwnedVariant::from(b),
    }
}
