//! `tutorctl`: controls tutord over D-Bus, as `systemctl` does systemd.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tutord::cli::BusChoice;
use tutord::ctl::{Client, render};

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
    /// Change the daemon's log level until its next restart.
    LogLevel {
        /// error, warn, info, debug or trace
        level: String,
    },
}

/// The same default as libdbus's method call timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);

fn main() -> ExitCode {
    let args = Args::parse();
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
    let result = runtime.block_on(async {
        tokio::time::timeout(CALL_TIMEOUT, run(args))
            .await
            .unwrap_or_else(|_| {
                Err(tutord::ctl::CtlError::Call(format!(
                    "no answer within {} s from the bus or tutord",
                    CALL_TIMEOUT.as_secs()
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
        Command::LogLevel { level } => {
            client.set_log_level(&level).await?;
            String::new()
        }
    })
}
