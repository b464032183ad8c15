//! `tutorctl`: controls tutord over D-Bus, as `systemctl` does systemd.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tutord::cli::BusChoice;
use tutord::ctl::{Client, CtlError, plan, render, roofline};

/// Control the tutord voice tutor daemon over D-Bus.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Bus tutord is on: system, session, or a D-Bus address such as unix:path=/tmp/bus.
    #[arg(long, value_name = "BUS", default_value = "system", global = true)]
    bus: BusChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the daemon's state, status line, board and version.
    Status,
    /// Show everything the daemon reports for diagnosis.
    Diagnostics {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the tutor a question; the answer is printed as it streams, then its figures.
    Ask {
        /// The question.
        question: String,
        /// Start a new conversation instead of following up on the last one.
        #[arg(long)]
        new_session: bool,
    },
    /// Ask a spoken question from a WAV file (16 kHz mono 16-bit PCM): the daemon finds the
    /// speech, transcribes it and answers; prints the transcript, the answer and the timings.
    Listen {
        /// The recording.
        #[arg(long, value_name = "FILE")]
        wav: PathBuf,
        /// Write the spoken answer to this WAV file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Start a new conversation instead of following up on the last one.
        #[arg(long)]
        new_session: bool,
    },
    /// Show what tuning has in effect: stopped units, CPU affinity, governors, throttling.
    Tuning {
        /// Print JSON (the `tuning_*` diagnostics) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the plan: the machine as measured, each model's predicted speed, and the choice.
    Plan {
        /// Print `Plan()`'s answer as JSON instead of a table.
        #[arg(long, conflicts_with = "board")]
        json: bool,
        /// Plan board NAME (a boards.toml entry) from its nominal bandwidth and memory,
        /// without a daemon: the models an image for it ships.
        #[arg(long, value_name = "NAME")]
        board: Option<String>,
        /// With --board: the model catalog [default: `[models] catalog` of the configuration]
        #[arg(long, value_name = "FILE", requires = "board")]
        catalog: Option<PathBuf>,
        /// With --board: the board profiles [default: `[platform] boards`, else built in]
        #[arg(long, value_name = "FILE", requires = "board")]
        boards: Option<PathBuf>,
        /// With --board: MemAvailable to plan for, MiB [default: the profile's nominal figure]
        #[arg(long, value_name = "MIB", requires = "board")]
        mem_available_mib: Option<u32>,
    },
    /// Show the memory bandwidth and compute tutord measured; draw the roofline.
    Bench {
        /// Run the benchmark again first (about 1.3 s; refused while an answer is written).
        #[arg(long)]
        rerun: bool,
        /// Also write the roofline picture (SVG) of the plan to FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Fetch and list model files; needs no daemon.
    Models(tutord::models::cli::ModelsArgs),
    /// Speak a text into a WAV file with the configured voice (no daemon needed).
    Say(tutord::voice::cli::SayArgs),
    /// Print the signals tutord sends (answers, transcripts, property changes) as they come.
    Watch {
        /// Stop after this many seconds (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
    },
    /// Change the daemon's log level until its next restart.
    LogLevel {
        /// error, warn, info, debug or trace
        level: String,
    },
}

/// The same default as libdbus's method call timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// `Rebenchmark()` takes `[bench] budget_ms` + `compute_budget_ms` (1.3 s by default, more
/// when configured so) before it answers.
const REBENCHMARK_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let args = Args::parse();
    // Model files are no business of the daemon: no bus, no runtime, no call timeout.
    if let Command::Models(models) = args.command {
        return tutord::models::cli::run(models, || {
            tutord::config::load(&tutord::config::Sources::from_process(None)).map(|c| c.models.dir)
        });
    }
    // A board's nominal plan reads files only: no bus either.
    if let Command::Plan {
        board: Some(board),
        catalog,
        boards,
        mem_available_mib,
        ..
    } = &args.command
    {
        let result = tutord::config::load(&tutord::config::Sources::from_process(None))
            .map_err(|e| e.to_string())
            .and_then(|config| {
                tutord::plan::nominal::run(
                    &config,
                    board,
                    catalog.as_deref(),
                    boards.as_deref(),
                    *mem_available_mib,
                )
            });
        return match result {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tutorctl: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Say(say) = args.command {
        return tutord::voice::cli::run(say, || {
            tutord::config::load(&tutord::config::Sources::from_process(None))
                .ok()
                .map(|c| (c.models.dir, c.voice))
        });
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tutorctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A bus that accepts the connection but never answers (a wrong policy, a wedged daemon)
    // must not hang a script: give up with a message like any other failure.
    // An answer streams for as long as the model writes: `ask` bounds the silence between
    // pieces instead (Client::ask).
    let limit = match args.command {
        Command::Ask { .. } | Command::Listen { .. } | Command::Watch { .. } => Duration::MAX,
        Command::Bench { rerun: true, .. } => REBENCHMARK_TIMEOUT,
        _ => CALL_TIMEOUT,
    };
    let result = runtime.block_on(async {
        tokio::time::timeout(limit, run(args))
            .await
            .unwrap_or_else(|_| {
                Err(tutord::ctl::CtlError::Call(format!(
                    "no answer within {} s from the bus or tutord",
                    limit.as_secs()
                )))
            })
    });
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tutorctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<String, tutord::ctl::CtlError> {
    let client = Client::connect(&args.bus).await?;
    Ok(match args.command {
        Command::Status => render::status_table(&client.status().await?),
        Command::Diagnostics { json: true } => {
            format!(
                "{:#}\n",
                render::diagnostics_json(&client.diagnostics().await?)
            )
        }
        Command::Diagnostics { json: false } => {
            render::diagnostics_text(&client.diagnostics().await?)
        }
        Command::Ask {
            question,
            new_session,
        } => {
            let stats = client.ask(&question, new_session, print_piece).await?;
            answer_output(stats)?
        }
        Command::Listen {
            wav,
            out,
            new_session,
        } => {
            let bytes = std::fs::read(&wav).map_err(|e| {
                tutord::ctl::CtlError::Call(format!("{}: cannot read: {e}", wav.display()))
            })?;
            let (stats, audio) = client.listen_wav(&bytes, new_session, print_piece).await?;
            let mut text = answer_output(stats)?;
            if let Some(path) = out {
                let Some((rate, samples)) = audio else {
                    return Err(tutord::ctl::CtlError::Call(
                        "the daemon spoke no answer (no voice loaded?)".into(),
                    ));
                };
                tutord::voice::wav::write(&path, &samples, rate)
                    .map_err(|e| tutord::ctl::CtlError::Call(e.to_string()))?;
                text.push_str(&format!(
                    "spoken answer: {} ({:.1} s at {rate} Hz)\n",
                    path.display(),
                    samples.len() as f64 / f64::from(rate)
                ));
            }
            text
        }
        Command::Tuning { json } => {
            let d = client.diagnostics().await?;
            if json {
                let only: std::collections::HashMap<_, _> = d
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("tuning_"))
                    .collect();
                format!("{:#}\n", render::diagnostics_json(&only))
            } else {
                tutord::ctl::tuning::text(&d)
            }
        }
        Command::Plan { json, .. } => {
            let (machine, candidates) = client.plan().await?;
            if json {
                format!("{:#}\n", plan::json(&machine, &candidates))
            } else {
                plan::plan_text(&plan::PlanView::from_dicts(&machine, &candidates))
            }
        }
        Command::Bench { rerun, svg } => {
            let mut out = String::new();
            if rerun {
                let started = std::time::Instant::now();
                client.rebenchmark().await?;
                out = format!(
                    "Benchmarked again in {:.1} s.\n",
                    started.elapsed().as_secs_f64()
                );
            }
            let (machine, candidates) = client.plan().await?;
            let view = plan::PlanView::from_dicts(&machine, &candidates);
            out.push_str(&plan::machine_text(&view.machine));
            if let Some(path) = svg {
                std::fs::write(&path, roofline::svg(&view)).map_err(|source| CtlError::Write {
                    path: path.clone(),
                    source,
                })?;
                out.push_str(&format!("Roofline written to {}\n", path.display()));
            }
            out
        }
        Command::Models(_) | Command::Say(_) => unreachable!("handled in main, without the bus"),
        Command::Watch { seconds } => {
            client
                .watch(seconds, |line| {
                    use std::io::Write;
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                })
                .await?;
            String::new()
        }
        Command::LogLevel { level } => {
            client.set_log_level(&level).await?;
            String::new()
        }
    })
}

fn print_piece(piece: &str) {
    use std::io::Write;
    print!("{piece}");
    let _ = std::io::stdout().flush();
}

/// The figures after a streamed answer; an error when the answer failed.
fn answer_output(
    stats: std::collections::HashMap<String, zbus::OwnedVariant>,
) -> Result<String, tutord::ctl::CtlError> {
    println!();
    let failed = matches!(
        stats.get("ok").map(|v| &**v),
        Some(zbus::Variant::Bool(false))
    );
    let mut out = String::from("\n");
    out.push_str(&render::answer_stats(&stats));
    if failed {
        eprint!("{out}");
        return Err(tutord::ctl::CtlError::Call(
            stats
                .get("error")
                .map(|e| format!("the answer failed: {}", render::variant_text(e)))
                .unwrap_or_else(|| "the answer failed".into()),
        ));
    }
    Ok(out)
}
