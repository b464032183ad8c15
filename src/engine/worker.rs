//! Starting one `tutord-engine` worker: a socketpair, the worker's end as fd 3, and its CPU
//! affinity set before it runs a single instruction of its own, so every thread it (or
//! llama.cpp, or the NPU runtime) creates inherits the placement.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tutord_protocol::{Event, FrameError, Request, decode, encode, frame_len};

use super::EngineFailure;

/// The descriptor number the worker finds its socket on.
const WORKER_FD: i32 = 3;

/// A started worker process and its socket.
pub struct Worker {
    pub child: tokio::process::Child,
    pub reader: OwnedReadHalf,
    pub writer: OwnedWriteHalf,
}

/// Starts `program` pinned to `cpus` (all CPUs when empty).
pub fn spawn(program: &Path, cpus: &[usize]) -> Result<Worker, EngineFailure> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| EngineFailure::Spawn(format!("socketpair: {e}")))?;
    ours.set_nonblocking(true)
        .map_err(|e| EngineFailure::Spawn(format!("socket: {e}")))?;
    let theirs: OwnedFd = theirs.into();
    let their_fd = theirs.as_raw_fd();
    let mask = cpu_set(cpus)?;
    let mut cmd = std::process::Command::new(program);
    cmd.env("TUTORD_ENGINE_FD", WORKER_FD.to_string())
        .stdin(std::process::Stdio::null());
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // functions may be called: dup2, fcntl and sched_setaffinity are, and it allocates
    // nothing (the CPU set was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            if their_fd == WORKER_FD {
                // dup2 onto itself keeps close-on-exec set: clear it by hand.
                if libc::fcntl(WORKER_FD, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(their_fd, WORKER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(set) = &mask
                && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EngineFailure::Spawn(format!("{}: {e}", program.display())))?;
    drop(theirs);
    let stream =
        UnixStream::from_std(ours).map_err(|e| EngineFailure::Spawn(format!("socket: {e}")))?;
    let (reader, writer) = stream.into_split();
    Ok(Worker {
        child,
        reader,
        writer,
    })
}

fn cpu_set(cpus: &[usize]) -> Result<Option<libc::cpu_set_t>, EngineFailure> {
    if cpus.is_empty() {
        return Ok(None);
    }
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(EngineFailure::Spawn(format!("CPU {cpu} is out of range")));
        }
        // SAFETY: cpu is below CPU_SETSIZE, the set's capacity.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(Some(set))
}

/// Sends one request.
pub async fn send(writer: &mut OwnedWriteHalf, req: &Request) -> std::io::Result<()> {
    writer.write_all(&encode(req)).await
}

/// Reads one event.
pub async fn recv(reader: &mut OwnedReadHalf) -> Result<Event, FrameError> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(prefix)?];
    reader.read_exact(&mut body).await?;
    decode(&body)
}
