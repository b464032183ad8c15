//! From the runtime's result callback to `on_piece`: one event per token, on whichever thread
//! the runtime calls from, turned into whole-UTF-8 pieces; stopping asks the runtime to abort;
//! a panic is carried back to the caller instead of unwinding through C.

use std::any::Any;
use std::ffi::{CStr, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::{Handle, sys};

/// Takes the longest complete UTF-8 text off the front of `buf`; with `flush`, all of it
/// (an incomplete character at the end becomes U+FFFD).
fn take_utf8(buf: &mut Vec<u8>, flush: bool) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(buf) {
            Ok(s) => {
                out.push_str(s);
                buf.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&buf[..valid]));
                match e.error_len() {
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        buf.drain(..valid + bad);
                    }
                    None if flush => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        buf.clear();
                        return out;
                    }
                    None => {
                        buf.drain(..valid);
                        return out;
                    }
                }
            }
        }
    }
}

/// What one run collects from the callback; its address is the run's `userdata`.
pub(super) struct RunState<'a> {
    pub(super) on_piece: &'a mut dyn FnMut(&str) -> bool,
    pub(super) handle: &'a Handle,
    /// Token text not yet passed on (an incomplete UTF-8 character).
    pub(super) pending: Vec<u8>,
    pub(super) answer: String,
    /// Token events (NORMAL and WAITING) before the answer was stopped.
    pub(super) tokens: u32,
    pub(super) first_piece: Option<Instant>,
    pub(super) last_piece: Option<Instant>,
    pub(super) stopped: bool,
    pub(super) failed: bool,
    pub(super) perf: Option<sys::RKLLMPerfStat>,
    /// A panic of `on_piece`, carried over the C frames and resumed after the run.
    pub(super) panic: Option<Box<dyn Any + Send>>,
}

impl RunState<'_> {
    fn event(&mut self, result: Option<&sys::RKLLMResult>, state: sys::LLMCallState) {
        match state {
            sys::RKLLM_RUN_NORMAL | sys::RKLLM_RUN_WAITING => {
                if self.stopped {
                    return;
                }
                self.tokens += 1;
                // A WAITING token's text is an incomplete character that a later NORMAL event
                // carries whole; only NORMAL text is taken.
                if let Some(r) = result.filter(|_| state == sys::RKLLM_RUN_NORMAL)
                    && !r.text.is_null()
                {
                    // SAFETY: the runtime's text is a NUL-terminated string that stays
                    // valid for the duration of this callback; it is copied out here.
                    let bytes = unsafe { CStr::from_ptr(r.text) }.to_bytes();
                    self.pending.extend_from_slice(bytes);
                }
                self.emit(false);
            }
            sys::RKLLM_RUN_FINISH => {
                self.perf = result.map(|r| r.perf);
                self.emit(true);
            }
            sys::RKLLM_RUN_ERROR => self.failed = true,
            _ => {}
        }
    }

    fn emit(&mut self, flush: bool) {
        if self.stopped || self.pending.is_empty() {
            return;
        }
        let text = take_utf8(&mut self.pending, flush);
        if text.is_empty() {
            return;
        }
        let now = Instant::now();
        self.first_piece.get_or_insert(now);
        self.last_piece = Some(now);
        self.answer.push_str(&text);
        if !(self.on_piece)(&text) {
            self.stop();
        }
    }

    /// Asks the runtime to end the run; it still sends a FINISH event and then returns.
    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            // A failed abort leaves the answer running to its end, its pieces dropped.
            self.handle.abort();
        }
    }
}

/// The runtime's result callback (`RKLLMCallback::result_callback`).
pub(super) unsafe extern "C" fn on_result(
    result: *mut sys::RKLLMResult,
    userdata: *mut c_void,
    state: sys::LLMCallState,
) -> c_int {
    if userdata.is_null() {
        return sys::CALLBACK_CONTINUE;
    }
    // SAFETY: a non-NULL userdata is the `RunState` that `generate` passed to `rkllm_run`. It
    // lives on `generate`'s stack until `rkllm_run` returns, and the runtime delivers a run's
    // events one at a time and before `rkllm_run` returns, while `generate` waits inside it:
    // this is the only reference in use, whichever thread the runtime calls from.
    let run = unsafe { &mut *userdata.cast::<RunState<'_>>() };
    // SAFETY: the runtime passes a result that is valid during this call, or NULL.
    let result = unsafe { result.as_ref() };
    if run.panic.is_none() {
        // Unwinding into the runtime's C frames is not allowed: a panic of `on_piece` is kept
        // and resumed by `generate` once `rkllm_run` has returned.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run.event(result, state))) {
            run.panic = Some(payload);
            run.stop();
        }
    }
    sys::CALLBACK_CONTINUE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_passed_on_whole_characters_only() {
        let mut buf = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut buf, false), "");
        buf.extend_from_slice(&"é".as_bytes()[1..]);
        buf.extend_from_slice(b"x");
        assert_eq!(take_utf8(&mut buf, false), "éx");
        let mut bad = vec![b'a', 0xFF, b'b', 0xC3];
        assert_eq!(take_utf8(&mut bad, false), "a\u{FFFD}b");
        assert_eq!(take_utf8(&mut bad, true), "\u{FFFD}");
        assert!(bad.is_empty());
    }
}
