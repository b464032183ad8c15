//! The worker's side of the protocol: one thread reads requests (so `Abort`, `Ping` and
//! `Count` are answered while an answer is being generated), the calling thread owns the
//! engine.

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use tutord_protocol::{Event, FrameError, Request, read_msg, write_msg};

use crate::engine::{Counter, Engine, EngineError, LoadSpec};

/// Loads the backend a spec names.
pub fn load_engine(spec: &LoadSpec) -> Result<Box<dyn Engine>, EngineError> {
    use crate::engine::BackendKind;
    match spec.backend {
        BackendKind::Cpu | BackendKind::Cuda => {
            Ok(Box::new(crate::llama::LlamaEngine::load(spec)?))
        }
        BackendKind::Npu => Ok(Box::new(crate::rkllm::RkllmEngine::load(
            spec,
            &crate::rkllm::RkllmOptions::default(),
        )?)),
    }
}

/// The test-only fault switch, `TUTORD_TEST_FAULT`: `hang-engine` makes this worker behave as
/// if its runtime were wedged in a driver call once the model is loaded (it answers no `Ping`
/// and never finishes an answer); `hang-load` wedges it while loading. They exist so the
/// tests can check that a hung engine stops tutord's watchdog pings (tests/faults.rs,
/// tests/nspawn/watchdog.sh); nothing sets them in production. `slow-load` makes every load
/// take 4 s longer, as a 7B model read from eMMC would (tests/model_switch.rs: calls during
/// a switch, SIGTERM during a load). `crash-generate` aborts the process whenever it is asked
/// to answer, as llama.cpp does when a model's vocabulary makes it throw a C++ exception while
/// tokenizing (tests/faults.rs: the model is given up after two answers in a row).
fn fault(name: &str) -> bool {
    std::env::var("TUTORD_TEST_FAULT").as_deref() == Ok(name)
}

/// Blocks this thread for good (a test fault).
fn hang(why: &str) -> ! {
    eprintln!("tutord-engine: TUTORD_TEST_FAULT: hanging {why}");
    loop {
        std::thread::park();
    }
}

/// Aborts the process as an uncaught C++ exception would (a test fault), without a core file.
fn crash(why: &str) -> ! {
    eprintln!("tutord-engine: TUTORD_TEST_FAULT: aborting {why}");
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
    std::process::abort()
}

/// What the reader thread and the engine thread share.
struct Shared {
    writer: Mutex<UnixStream>,
    /// The turn being answered, 0 when idle (turn ids start at 1).
    busy_turn: AtomicU64,
    abort: AtomicBool,
    pieces: AtomicU64,
    /// The loaded model's token counter, for `Count` (set once the model is loaded).
    counter: OnceLock<Counter>,
}

impl Shared {
    fn send(&self, ev: &Event) -> bool {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        write_msg(&mut *w, ev).is_ok()
    }
}

/// Work for the engine thread.
enum Job {
    Load(LoadSpec),
    Generate(Request),
    Reset,
}

/// Serves the daemon on `stream` until it hangs up. Returns the reason it stopped.
pub fn serve(stream: UnixStream) -> String {
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => return format!("cannot clone the daemon socket: {e}"),
    };
    let shared = Arc::new(Shared {
        writer: Mutex::new(writer),
        busy_turn: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        pieces: AtomicU64::new(0),
        counter: OnceLock::new(),
    });
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
    let reader_shared = shared.clone();
    let reader = std::thread::Builder::new()
        .name("engine-reader".into())
        .spawn(move || read_loop(stream, reader_shared, jobs_tx));
    if let Err(e) = reader {
        return format!("cannot start the reader thread: {e}");
    }

    let mut engine: Option<Box<dyn Engine>> = None;
    for job in jobs_rx {
        match job {
            Job::Load(spec) => {
                if fault("slow-load") {
                    // Answers pings meanwhile (the reader thread): only the load is slow.
                    eprintln!("tutord-engine: TUTORD_TEST_FAULT: loading 4 s slower");
                    std::thread::sleep(std::time::Duration::from_secs(4));
                }
                if fault("hang-load") {
                    hang("while loading");
                }
                if engine.is_some() {
                    shared.send(&Event::LoadFailed {
                        error: "a model is already loaded: start a new worker to switch".into(),
                    });
                    continue;
                }
                match load_engine(&spec) {
                    Ok(e) => {
                        if let Some(counter) = e.counter() {
                            let _ = shared.counter.set(counter);
                        }
                        shared.send(&Event::Loaded {
                            info: e.info().clone(),
                        });
                        engine = Some(e);
                    }
                    Err(e) => {
                        shared.send(&Event::LoadFailed {
                            error: e.to_string(),
                        });
                    }
                }
            }
            Job::Reset => {
                if let Some(e) = engine.as_mut() {
                    e.reset();
                }
            }
            Job::Generate(Request::Generate {
                turn,
                chat,
                sampling,
            }) => {
                let Some(e) = engine.as_mut() else {
                    shared.send(&Event::Failed {
                        turn,
                        error: "no model is loaded".into(),
                    });
                    continue;
                };
                if fault("hang-engine") {
                    hang(&format!("in turn {turn}"));
                }
                if fault("crash-generate") {
                    crash(&format!("in turn {turn}"));
                }
                shared.abort.store(false, Ordering::SeqCst);
                shared.busy_turn.store(turn, Ordering::SeqCst);
                let mut on_piece = |text: &str| {
                    shared.pieces.fetch_add(1, Ordering::Relaxed);
                    let sent = shared.send(&Event::Piece {
                        turn,
                        text: text.to_string(),
                    });
                    // A daemon that went away cannot read the rest: stop generating.
                    sent && !shared.abort.load(Ordering::SeqCst)
                };
                let result = e.generate(&chat, &sampling, &mut on_piece);
                shared.busy_turn.store(0, Ordering::SeqCst);
                let ev = match result {
                    Ok(stats) => Event::Finished { turn, stats },
                    Err(err) => Event::Failed {
                        turn,
                        error: err.to_string(),
                    },
                };
                shared.send(&ev);
            }
            Job::Generate(_) => unreachable!("only Generate requests are queued as jobs"),
        }
    }
    "the daemon closed the connection".into()
}

fn read_loop(mut stream: UnixStream, shared: Arc<Shared>, jobs: mpsc::Sender<Job>) {
    // Both hang faults answer no heartbeat, as a wedged process would not.
    let hang = fault("hang-engine") || fault("hang-load");
    loop {
        let req = match read_msg::<Request>(&mut stream) {
            Ok(r) => r,
            Err(FrameError::Closed) => break,
            Err(e) => {
                eprintln!("tutord-engine: bad request from the daemon: {e}");
                break;
            }
        };
        let job = match req {
            Request::Ping { .. } if hang => continue,
            Request::Ping { seq } => {
                let busy = shared.busy_turn.load(Ordering::SeqCst);
                shared.send(&Event::Pong {
                    seq,
                    busy_turn: (busy != 0).then_some(busy),
                    pieces: shared.pieces.load(Ordering::Relaxed),
                });
                continue;
            }
            Request::Count { .. } if hang => continue,
            Request::Count { id, text } => {
                let ev = match shared.counter.get() {
                    Some(count) => Event::Counted {
                        id,
                        tokens: u32::try_from(count(&text)).unwrap_or(u32::MAX),
                    },
                    None => Event::CountFailed {
                        id,
                        error: "no model is loaded, or its backend cannot count tokens".into(),
                    },
                };
                shared.send(&ev);
                continue;
            }
            Request::Abort { turn } => {
                if shared.busy_turn.load(Ordering::SeqCst) == turn {
                    shared.abort.store(true, Ordering::SeqCst);
                }
                continue;
            }
            Request::Load(spec) => Job::Load(spec),
            Request::Reset => Job::Reset,
            g @ Request::Generate { .. } => Job::Generate(g),
        };
        if jobs.send(job).is_err() {
            break;
        }
    }
    // Dropping `jobs` ends the engine thread's loop once the current answer is done; abort
    // it so that is soon.
    shared.abort.store(true, Ordering::SeqCst);
    if hang {
        // A test-hung engine thread never ends: under systemd the unit's cgroup is killed,
        // in the tests nothing else would end this process once its daemon is gone.
        eprintln!("tutord-engine: the daemon is gone; ending the test-hung worker");
        std::process::exit(0);
    }
}
