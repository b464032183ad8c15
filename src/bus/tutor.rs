//! `org.tutord.Tutor1` on `/org/tutord/Tutor1`: the interface the tutor UI and `tutorctl`
//! use. Methods only translate: arguments to a domain's call, its errors to named D-Bus
//! errors. Properties read the daemon's published status and the domains' handles; signals
//! are sent by `bus::signals` from the tutor's events. The interface object holds no state
//! of its own, so nothing ever takes its write lock: a long method (`SelectModel` loading a
//! model, `Rebenchmark`, `ListenWav` transcribing) holds only a shared read lock, and every
//! other call and property read goes on meanwhile.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedVariant, Str, Variant, interface};

use super::TutorError;
use crate::config::LogLevel;
use crate::diagnostics::Value;
use crate::plan::service::SelectError;
use crate::state::Status;
use crate::tutor::{AskError, AskOptions, Origin, SpeakError};
use crate::voice::live_handle::{LiveError, LiveHandle};

/// What the interface translates onto: the domains' handles and the daemon's status.
pub struct Handles {
    pub tutor: crate::tutor::Service,
    pub plan: crate::plan::service::Service,
    pub voice: crate::voice::Voice,
    pub status: watch::Receiver<Status>,
    pub daemon: Arc<dyn crate::diagnostics::Source>,
    pub admin_group: String,
    pub models_dir: PathBuf,
}

/// The interface object.
pub struct Tutor1 {
    h: Handles,
}

impl Tutor1 {
    pub fn new(h: Handles) -> Self {
        Self { h }
    }

    /// Refuses callers that may not change the system (see `bus::access`).
    async fn require_admin(
        &self,
        conn: &zbus::Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<(), TutorError> {
        super::access::require_admin(conn, header, &self.h.admin_group, method).await
    }

    /// The live voice loop, or `NotReady` saying why there is none.
    fn live(&self) -> Result<LiveHandle, TutorError> {
        self.h
            .voice
            .live()
            .map_err(|why| TutorError::NotReady(format!("no microphone: {why}")))
    }

    fn status(&self) -> Status {
        self.h.status.borrow().clone()
    }
}

#[interface(name = "org.tutord.Tutor1")]
impl Tutor1 {
    /// Everything a person diagnosing the appliance wants in one call: version, pid, uptime,
    /// board, state, state directory and database, boot counts, watchdog and log settings.
    /// Keys are stable lowercase words with underscores; values are strings or numbers.
    async fn diagnostics(&self) -> HashMap<String, OwnedVariant> {
        self.h
            .daemon
            .diagnostics()
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
        self.h
            .daemon
            .set_log_level(parsed)
            .map_err(|e| TutorError::ZBus(zbus::Error::Failure(e)))
    }

    /// Asks the tutor a question. Returns a turn id at once; the answer streams as `Token`
    /// signals and ends with `AnswerFinished`. Options: `new_session` (b) forgets the
    /// conversation first; `max_tokens` (u) and `temperature` (d) override the config for
    /// this answer. Questions asked while one is answered wait their turn, up to 4; then
    /// `Busy`. `NotReady` when no model is loaded, `InvalidArgument` for an empty or
    /// oversized question (over 24 KiB, or more tokens than the model's context leaves for
    /// it with the instructions and `max_tokens`: the message names the limit) or an unknown
    /// option.
    async fn ask(
        &self,
        text: &str,
        options: HashMap<String, OwnedVariant>,
    ) -> Result<String, TutorError> {
        let options = parse_ask_options(&options)?;
        self.h
            .tutor
            .check_fits(text, &options)
            .await
            .map_err(ask_error)?;
        self.h
            .tutor
            .ask(text, options, Origin::Typed)
            .map_err(ask_error)
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
    ) -> Result<String, TutorError> {
        let options = parse_ask_options(&options)?;
        let heard = self.h.voice.hear(wav).await.map_err(|e| {
            use crate::voice::pipeline::VoiceError as V;
            match e {
                V::NotReady(_) => TutorError::NotReady(e.to_string()),
                V::Stt(_) => TutorError::Failed(e.to_string()),
                V::Wav(_) | V::NoSpeech { .. } | V::NoWords | V::TooLarge { .. } => {
                    TutorError::InvalidArgument(e.to_string())
                }
                V::Busy => TutorError::Busy(e.to_string()),
            }
        })?;
        let text = heard.text.clone();
        self.h
            .tutor
            .ask(&text, options, Origin::Recording(heard))
            .map_err(ask_error)
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
    async fn speak(&self, text: &str) -> Result<String, TutorError> {
        self.h.tutor.speak(text).map_err(|e| match e {
            SpeakError::Invalid(_) => TutorError::InvalidArgument(e.to_string()),
            SpeakError::Busy => TutorError::Busy(e.to_string()),
            SpeakError::NoVoice => TutorError::NotReady(e.to_string()),
        })
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
    async fn start_session(&self, subject: &str) -> Result<String, TutorError> {
        let s = self.h.tutor.start_session(subject).map_err(session_error)?;
        Ok(s.id.to_string())
    }

    /// Ends the current session; the next question starts a new one on the configured
    /// subject. `Busy` while questions are pending.
    async fn end_session(&self) -> Result<(), TutorError> {
        self.h.tutor.end_session().map_err(session_error)
    }

    /// A page of a session's turns: `limit` turns (0 = 100, at most 500) counted back from
    /// the newest, after skipping the newest `offset`, so (0, 50) is the latest 50 and
    /// (50, 50) the 50 before them; a page shorter than `limit` reaches the first turn. Each
    /// page is oldest first, one dictionary per turn: `turn_id`, `source` (text or voice),
    /// `question`, `answer` (absent while unanswered or when it never finished), `asked_at`,
    /// `finished_at` (ISO 8601 UTC), `time_to_first_token`, `tokens_per_second`,
    /// `generated_tokens`, `aborted`, `error`. `InvalidArgument` for an unknown session id
    /// or a limit over 500.
    async fn history(
        &self,
        session_id: &str,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<HashMap<String, OwnedVariant>>, TutorError> {
        let turns = self
            .h
            .tutor
            .history(session_id, offset, limit)
            .map_err(session_error)?;
        Ok(turns.into_iter().map(turn_entry).collect())
    }

    /// Stops the answer being generated and drops the questions waiting; each ends with
    /// `AnswerFinished` whose stats have `aborted` = true.
    async fn abort(&self) {
        self.h.tutor.abort();
    }

    /// Switches to the catalog model `name` (or the path of a regular file under `[models]
    /// dir`, no links; any other path is `UnknownModel`, said the same way whether or not it
    /// exists): restarts the engine
    /// worker with it and returns once it is loaded; the conversation goes on with it.
    /// Meanwhile every other call answers: `Ask` gets `NotReady` ("switching to the model
    /// …"), properties and `Diagnostics()` read as usual, and `Model`/`Backend`/`ModelBytes`
    /// change (`PropertiesChanged`) when the old model leaves and the new one is in.
    /// `UnknownModel` for a name not in the catalog or not fetched, `Busy` while questions
    /// are pending (both change nothing), `EngineFailed` when the model does not load: the
    /// model that served before is loaded again and the message ends "; back on <model>";
    /// `AccessDenied` for a caller other than root or `[daemon] admin_group`.
    async fn select_model(
        &self,
        name: &str,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), TutorError> {
        self.require_admin(conn, &header, "SelectModel").await?;
        self.h.plan.select(name).await.map_err(|e| match e {
            SelectError::Busy(b) => TutorError::Busy(b.to_string()),
            SelectError::Unknown(m) => TutorError::UnknownModel(m),
            SelectError::Failed(m) => TutorError::EngineFailed(m),
        })
    }

    /// Runs the memory and compute benchmark again now (ignoring the cached result), plans
    /// again and returns when done (about `[bench] budget_ms` + `compute_budget_ms`). The
    /// loaded model stays: `Plan()` shows whether the plan would now choose another, and
    /// `SelectModel` switches. `Busy` while an answer is being written (the benchmark would
    /// measure the answer, not the bus); `AccessDenied` for a caller other than root or
    /// `[daemon] admin_group`.
    async fn rebenchmark(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), TutorError> {
        self.require_admin(conn, &header, "Rebenchmark").await?;
        if self.h.tutor.busy() {
            return Err(TutorError::Busy(
                "an answer is being written; benchmark when the tutor is idle".into(),
            ));
        }
        self.h.plan.benchmark(true).await;
        self.h.plan.plan();
        Ok(())
    }

    /// The plan: the machine as measured (bandwidths in bytes/s, compute in op/s, the
    /// targets, the voice's share of first audio, the calibrated efficiencies, the choice and
    /// its reason) and one dictionary per (model, backend) candidate (predicted tokens/s,
    /// first-token and first-audio seconds, which roof binds, memory needed, whether it fits
    /// and is fetched, whether it was chosen).
    async fn plan(
        &self,
    ) -> (
        HashMap<String, OwnedVariant>,
        Vec<HashMap<String, OwnedVariant>>,
    ) {
        let (machine, candidates) = self.h.plan.plan_report();
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
    /// `predicted_first_token_seconds`, `predicted_first_audio_seconds`, `binding`
    /// (bandwidth|compute), `memory_needed`,
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
        let dir = &self.h.models_dir;
        self.h
            .plan
            .catalog()
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
                    .h
                    .plan
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
    pub(crate) async fn token(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        piece: &str,
    ) -> zbus::Result<()>;

    /// The answer to `turn_id` is complete (or failed, or was aborted). Stats: `ok` (b),
    /// `error` (s, when not ok), `aborted` (b), `truncated` (b, cut short by `max_tokens`:
    /// `answer` then ends at its last complete sentence, or with " …" when none was
    /// complete, and replaces the text the `Token`s wrote), `answer` (s, as stored and as
    /// the model sees it next), `prompt_tokens` (u, processed
    /// for this turn), `reused_tokens` (u, taken from the kept conversation),
    /// `window_left_out` (u, messages of the oldest turns left out of the prompt so that it
    /// fits the context; they stay in `History`), `generated_tokens`
    /// (u), `time_to_first_token` (d, s from Ask), `tokens_per_second` (d, decode),
    /// `prompt_tokens_per_second` (d), `peak_rss_bytes` (t, of the engine worker).
    #[zbus(signal)]
    pub(crate) async fn answer_finished(
        emitter: &SignalEmitter<'_>,
        turn_id: &str,
        stats: HashMap<String, OwnedVariant>,
    ) -> zbus::Result<()>;

    /// The engine running the model: `cpu`, `cuda`, `npu`, or empty when none is loaded.
    #[zbus(property)]
    async fn backend(&self) -> String {
        self.h.plan.figures().backend
    }

    /// The loaded model's file, or empty.
    #[zbus(property)]
    async fn model(&self) -> String {
        self.h.plan.figures().model
    }

    /// Size of the loaded model's file in bytes (what each token reads), 0 when none.
    #[zbus(property)]
    async fn model_bytes(&self) -> u64 {
        self.h.plan.figures().model_bytes
    }

    /// Decode speed of the last answer, tokens per second.
    #[zbus(property)]
    async fn last_tokens_per_second(&self) -> f64 {
        self.status().last_tokens_per_second
    }

    /// The current tutoring session's id ("" before the first question or after
    /// `EndSession`).
    #[zbus(property)]
    async fn session(&self) -> String {
        self.h
            .tutor
            .current_session()
            .map_or(String::new(), |s| s.id.to_string())
    }

    /// Read bandwidth the boot benchmark measured on the inference cores, bytes/s (0 before
    /// it ran).
    #[zbus(property)]
    async fn bandwidth_measured(&self) -> f64 {
        self.h.plan.figures().bandwidth_measured
    }

    /// DDR clock × 2 × bus width ÷ 8, bytes/s; 0 when the board does not tell its DDR clock.
    #[zbus(property)]
    async fn bandwidth_theoretical(&self) -> f64 {
        self.h.plan.figures().bandwidth_theoretical
    }

    /// The planner's decode speed for the loaded model, tokens/s (0 for a model outside the
    /// catalog); calibrated after every answer.
    #[zbus(property)]
    async fn predicted_tokens_per_second(&self) -> f64 {
        self.h.plan.figures().predicted_tokens_per_second
    }

    /// Time from `Ask` to the first piece of the last answer, seconds.
    #[zbus(property)]
    async fn last_time_to_first_token(&self) -> f64 {
        self.status().last_time_to_first_token
    }

    /// What the daemon is doing, one lowercase word: `booting`, `tuning`, `benchmarking`,
    /// `loading`, `ready`, `listening`, `thinking`, `speaking` or `error`.
    #[zbus(property)]
    async fn state(&self) -> String {
        self.status().state.as_str().to_string()
    }

    /// The last status line, as systemd's `StatusText` shows it (e.g. "Ready").
    #[zbus(property)]
    async fn status_text(&self) -> String {
        self.status().status_text
    }

    /// Progress of the current boot step or long operation, from 0.0 to 1.0.
    #[zbus(property)]
    async fn progress(&self) -> f64 {
        self.status().progress
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
        self.status().board
    }

    /// The last error that stopped an operation, empty when there was none.
    #[zbus(property)]
    async fn last_error(&self) -> String {
        self.status().last_error
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

fn ask_error(e: AskError) -> TutorError {
    match e {
        AskError::Invalid(m) => TutorError::InvalidArgument(m),
        AskError::NotReady(_) => TutorError::NotReady(e.to_string()),
        AskError::Busy(_) => TutorError::Busy(e.to_string()),
    }
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

pub(crate) fn to_variant(v: Value) -> OwnedVariant {
    match v {
        Value::Str(s) => OwnedVariant::from(Str::from(s)),
        Value::U64(n) => OwnedVariant::from(n),
        Value::I64(n) => OwnedVariant::from(n),
        Value::F64(n) => OwnedVariant::from(n),
        Value::Bool(b) => OwnedVariant::from(b),
    }
}
