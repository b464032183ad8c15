//! `tutorctl models fetch [NAME…]` and `tutorctl models list`: the command line over this
//! module, kept in the library so that `tutorctl` stays a thin dispatcher. Needs no daemon
//! and no bus; the README's set-up runs the same command.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Catalog, DEFAULT_CATALOG_PATH, FetchOptions, ProgressPrinter, fetch_all, list_text};

/// `tutorctl models …`
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// The model catalog.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CATALOG_PATH)]
    pub catalog: PathBuf,
    /// The models folder [default: `[models] dir` of tutord's configuration]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(subcommand)]
    pub action: ModelsAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsAction {
    /// Download, join and verify models; with no NAME, the catalog's default set. Skips
    /// files already there and verified.
    Fetch {
        /// Catalog names, as `tutorctl models list` shows them.
        names: Vec<String>,
    },
    /// Show each model, its size, and whether its file is present and verified.
    List {
        /// Hash files changed since they were last verified (reads them: slow for big ones).
        #[arg(long)]
        verify: bool,
    },
}

/// Runs one `tutorctl models` command: results on stdout, progress and errors on stderr.
/// `configured_dir` gives `[models] dir` from the configuration; it is read only when
/// `--dir` is not given, so a broken /etc/tutord/tutord.toml does not stop `--dir` uses.
pub fn run<E: Display>(
    args: ModelsArgs,
    configured_dir: impl FnOnce() -> Result<PathBuf, E>,
) -> ExitCode {
    let fail = |e: &dyn Display| {
        eprintln!("tutorctl: {e}");
        ExitCode::FAILURE
    };
    let catalog = match Catalog::load(&args.catalog) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let dir = match args.dir {
        Some(d) => d,
        None => match configured_dir() {
            Ok(d) => d,
            Err(e) => return fail(&e),
        },
    };
    match args.action {
        ModelsAction::List { verify } => {
            print!("{}", list_text(&catalog, &dir, verify));
            ExitCode::SUCCESS
        }
        ModelsAction::Fetch { names } => {
            let picked = match catalog.select(&names) {
                Ok(p) => p,
                Err(e) => return fail(&e),
            };
            if picked.is_empty() {
                return fail(&format!(
                    "nothing to fetch: no model in {} has default = true; name one",
                    catalog.origin
                ));
            }
            let mut printer = ProgressPrinter::new(std::io::stderr());
            let results = fetch_all(&picked, &dir, &FetchOptions::default(), &mut |p| {
                printer.print(p)
            });
            let mut status = ExitCode::SUCCESS;
            for (name, result) in results {
                match result {
                    Ok(f) => println!("{name}: {}", f.path.display()),
                    Err(e) => status = fail(&e),
                }
            }
            status
        }
    }
}
