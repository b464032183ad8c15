//! `tutord-engine`: the LLM worker process that `tutord` supervises.
//!
//! The LLM runs outside the daemon because whisper-rs and llama-cpp-sys-2 each link their own
//! static ggml (the link fails on duplicate `gguf_*` symbols) and because vendor NPU runtimes
//! crash; see docs/architecture.md, "Processes". The daemon starts it with one end of a
//! socketpair as file descriptor `TUTORD_ENGINE_FD` (default 3) and speaks
//! `tutord_protocol` over it.

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("tutord-engine {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let fd: i32 = match std::env::var("TUTORD_ENGINE_FD")
        .unwrap_or_else(|_| "3".into())
        .parse()
    {
        Ok(fd) => fd,
        Err(_) => {
            eprintln!("tutord-engine: TUTORD_ENGINE_FD is not a file descriptor number");
            return ExitCode::from(64);
        }
    };
    // SAFETY: fstat only reads the descriptor's status; a bad fd gives EBADF, not UB.
    let valid = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    };
    if !valid {
        eprintln!(
            "tutord-engine: file descriptor {fd} is not a socket: this program is started by \
             tutord, not by hand"
        );
        return ExitCode::from(64);
    }
    // SAFETY: fd was checked to be an open socket just above, and nothing else in this
    // process owns it: the daemon passed it to us for exactly this.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let why = tutord_engine::worker::serve(stream);
    eprintln!("tutord-engine: stopping: {why}");
    ExitCode::SUCCESS
}
