//! `tutorctl say --out FILE TEXT`: speaks a text into a WAV file with the configured voice,
//! without the daemon — to make a spoken question for `tutorctl listen --wav`, or to hear a
//! voice before choosing it.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::VoiceConfig;
use crate::models::{Catalog, DEFAULT_CATALOG_PATH};

/// `tutorctl say …`
#[derive(Debug, clap::Args)]
pub struct SayArgs {
    /// The model catalog (where the voice's name is looked up).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CATALOG_PATH)]
    pub catalog: PathBuf,
    /// The models folder [default: `[models] dir` of tutord's configuration]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The WAV file to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Sample rate of the file: the voice's own when not given; 16000 for a question to
    /// `tutorctl listen --wav`.
    #[arg(long, value_name = "HZ")]
    pub rate: Option<u32>,
    /// What to say.
    pub text: String,
}

/// Runs `tutorctl say`: the file's path and length on stdout, errors on stderr.
pub fn run(args: SayArgs, config: impl FnOnce() -> Option<(PathBuf, VoiceConfig)>) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("tutorctl say: {msg}");
        ExitCode::FAILURE
    };
    if args.rate.is_some_and(|r| !(8_000..=48_000).contains(&r)) {
        return fail("--rate must be 8000 to 48000 Hz".into());
    }
    let (configured_dir, voice) = config().unwrap_or_else(|| {
        (
            PathBuf::from(crate::models::DEFAULT_MODELS_DIR),
            VoiceConfig::default(),
        )
    });
    let dir = args.dir.unwrap_or(configured_dir);
    let catalog = match Catalog::load(&args.catalog) {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let tts = match super::tts::open_configured(&voice, &catalog, &dir, 2) {
        Ok(t) => t,
        Err(e) => return fail(e.to_string()),
    };
    let speech = match tts.synthesize(&args.text) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    if speech.samples.is_empty() {
        return fail("nothing to say: the text has no words".into());
    }
    let speech = match args.rate {
        Some(r) if r != speech.sample_rate => speech.resampled(r),
        _ => speech,
    };
    if let Err(e) = super::wav::write(&args.out, &speech.samples, speech.sample_rate) {
        return fail(e.to_string());
    }
    println!(
        "{}: {:.2} s at {} Hz",
        args.out.display(),
        speech.duration().as_secs_f64(),
        speech.sample_rate
    );
    ExitCode::SUCCESS
}
