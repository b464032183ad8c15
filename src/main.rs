//! `tutord`: arguments → config → logging → `daemon::run`. Everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tutord::cli::BusChoice;
use tutord::config::{self, LogLevel, Sources};
use tutord::{daemon, events, logging};

/// The tutor appliance daemon.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Main configuration file, instead of /etc/tutord/tutord.toml; drop-ins are read from
    /// PATH.d/.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Bus to serve on: system, session, or a D-Bus address such as unix:path=/tmp/bus.
    #[arg(long, value_name = "BUS", default_value = "system")]
    bus: BusChoice,
    /// State directory (database, caches), instead of the config's daemon.state_dir.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Root's side of tuning, run by tutord-tuning.service: stop the units the configuration
    /// lists (stop), or start again what was stopped (start).
    TuningUnits {
        #[arg(value_enum)]
        verb: tutord::tuning::helper::Verb,
    },
    /// Root's side of the memory limit (`tutord-memory@MiB.service`): sets MemoryHigh= and
    /// MemoryMax= of tutord.service for a plan needing MIB mebibytes.
    #[command(hide = true)]
    MemoryLimit { mib: String },
}

/// sysexits(3) EX_CONFIG: systemd's unit has RestartPreventExitStatus=78, so a bad config
/// is reported once instead of restarted in a loop.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let args = Args::parse();
    let sources = Sources::from_process(args.config.as_deref());
    let mut config = match config::load(&sources) {
        Ok(c) => c,
        Err(e) => {
            logging::init(LogLevel::Info);
            tracing::error!(
                message_id = events::CONFIG_INVALID,
                "invalid configuration: {e}"
            );
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Some(dir) = args.state_dir {
        if !dir.is_absolute() {
            logging::init(LogLevel::Info);
            tracing::error!(
                message_id = events::CONFIG_INVALID,
                "invalid configuration: --state-dir {} is not an absolute path",
                dir.display()
            );
            return ExitCode::from(EX_CONFIG);
        }
        config.daemon.state_dir = dir;
    }
    let log = logging::init(config.daemon.log_level);
    match args.command {
        Some(Command::TuningUnits { verb }) => return tuning_units(verb, &config),
        Some(Command::MemoryLimit { mib }) => return memory_limit(&mib, &config),
        None => {}
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = daemon::Options {
        config,
        bus: args.bus,
        config_path: sources.main,
    };
    let result = runtime.block_on(daemon::run(opts, log));
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    };
    // A stop during the boot can leave a blocking thread inside the benchmark or inside
    // whisper.cpp or ONNX Runtime loading a model; dropping the runtime would wait for it
    // without bound, so it gets 2 s. The engine worker is killed with its task
    // (kill_on_drop).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    // Then leave without the C and C++ libraries' exit handlers: their static destructors
    // racing such a thread crashed the process (SIGSEGV after "tutord stopped", seen in the
    // tests). Everything that matters is done by now: the store committed, tuning undone, the
    // journal lines written (unbuffered).
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; no Rust state is used after it, and the only
    // work skipped is the exit handlers, on purpose (above).
    unsafe { libc::_exit(i32::from(code)) }
}

/// `tutord tuning-units VERB`: a short run as root, no bus name, no store.
fn tuning_units(verb: tutord::tuning::helper::Verb, config: &config::Config) -> ExitCode {
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(tutord::tuning::helper::run(verb, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("tuning-units: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tutord memory-limit MIB`: a short run as root, no bus name, no store.
fn memory_limit(mib: &str, config: &config::Config) -> ExitCode {
    use tutord::tuning::memory;
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let paths = tutord::platform::Paths::new(&config.platform.root);
    let set = async {
        let limits = memory::limits_for_instance(mib, &paths)?;
        let systemd = tutord::tuning::Systemd::connect().await?;
        systemd
            .set_memory_limits(memory::LIMITED_UNIT, limits.high, limits.max)
            .await?;
        Ok::<_, tutord::tuning::TuningError>(limits)
    };
    match runtime.block_on(set) {
        Ok(limits) => {
            tracing::info!("{}: {}", memory::LIMITED_UNIT, limits.describe());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("memory-limit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The single-threaded runtime both modes run on; EX_OSERR when it cannot start.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!("cannot start the async runtime: {e}");
            ExitCode::from(71) // EX_OSERR
        })
}
