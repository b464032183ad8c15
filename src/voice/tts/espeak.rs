//! libespeak-ng, wrapped: Piper's phonemizer and the fallback formant voice.
//!
//! espeak-ng keeps one global synthesizer, so every call here holds [`LOCK`]; the library
//! is initialised once per process, in synchronous mode (audio comes back through a
//! callback while `espeak_Synth` runs, on the calling thread).

use std::ffi::{CStr, CString, c_int, c_short, c_void};
use std::sync::{Mutex, MutexGuard, OnceLock};

use espeakng_sys as sys;

use super::{Speech, Synthesizer, TtsError};

/// Serialises all use of the library.
static LOCK: Mutex<()> = Mutex::new(());
/// The sample rate espeak-ng synthesizes at, or why it could not start.
static INIT: OnceLock<Result<u32, String>> = OnceLock::new();

/// The library, initialised and locked; `voice` selected.
fn locked(voice: &str) -> Result<(MutexGuard<'static, ()>, u32), TtsError> {
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let rate = INIT
        .get_or_init(|| {
            // SAFETY: called once (OnceLock) under LOCK; a null path means the data
            // directory libespeak-ng was built with (Debian's espeak-ng-data).
            let rate = unsafe {
                sys::espeak_Initialize(
                    sys::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS,
                    0,
                    std::ptr::null(),
                    sys::espeakINITIALIZE_DONT_EXIT as c_int,
                )
            };
            if rate <= 0 {
                return Err(format!(
                    "espeak_Initialize failed ({rate}); is espeak-ng-data installed?"
                ));
            }
            // SAFETY: the callback is a plain function that lives for the whole program.
            unsafe { sys::espeak_SetSynthCallback(Some(collect)) };
            Ok(rate as u32)
        })
        .clone()
        .map_err(TtsError::Espeak)?;
    let name = CString::new(voice).map_err(|_| TtsError::Espeak("voice name has a NUL".into()))?;
    // SAFETY: `name` is a valid C string that outlives the call; LOCK is held.
    let rc = unsafe { sys::espeak_SetVoiceByName(name.as_ptr()) };
    if rc != sys::espeak_ERROR_EE_OK {
        return Err(TtsError::Espeak(format!(
            "no espeak-ng voice '{voice}' (error {rc}); is espeak-ng-data installed?"
        )));
    }
    Ok((guard, rate))
}

/// espeak-ng's synth callback: appends a chunk of samples to this thread's [`BUFFER`]
/// (synchronous mode calls it on the thread running `espeak_Synth`).
unsafe extern "C" fn collect(
    wav: *mut c_short,
    count: c_int,
    _events: *mut sys::espeak_EVENT,
) -> c_int {
    if !wav.is_null() && count > 0 {
        // SAFETY: espeak-ng passes `count` valid samples at `wav` for this call's duration.
        let chunk = unsafe { std::slice::from_raw_parts(wav, count as usize) };
        BUFFER.with(|b| b.borrow_mut().extend_from_slice(chunk));
    }
    0
}

thread_local! {
    static BUFFER: std::cell::RefCell<Vec<i16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// IPA phonemes of `text` in espeak-ng voice `voice`, clause by clause, each clause's
/// phonemes followed by a space (espeak-ng drops the punctuation between them).
pub fn phonemes(text: &str, voice: &str) -> Result<Vec<String>, TtsError> {
    let (_guard, _) = locked(voice)?;
    let c = CString::new(text).map_err(|_| TtsError::Espeak("text has a NUL".into()))?;
    let mut ptr: *const c_void = c.as_ptr().cast();
    let mut clauses = Vec::new();
    while !ptr.is_null() {
        // SAFETY: `ptr` points into `c` (NUL-terminated, alive), which espeak-ng advances
        // clause by clause and sets to null at the end; the result is a static buffer
        // valid until the next call, copied at once; LOCK is held.
        let out = unsafe {
            sys::espeak_TextToPhonemes(
                &mut ptr,
                sys::espeakCHARS_UTF8 as c_int,
                sys::espeakPHONEMES_IPA as c_int,
            )
        };
        if out.is_null() {
            break;
        }
        // SAFETY: a non-null result is a NUL-terminated string (see above).
        let s = unsafe { CStr::from_ptr(out) }
            .to_string_lossy()
            .into_owned();
        if !s.trim().is_empty() {
            clauses.push(s.trim().to_string());
        }
    }
    Ok(clauses)
}

/// The espeak-ng formant voice: the fallback when no Piper voice can run.
#[derive(Debug, Clone)]
pub struct Espeak {
    voice: String,
}

impl Espeak {
    /// Voice `voice` (e.g. `en-us`); checks the library starts and knows the voice.
    pub fn new(voice: &str) -> Result<Self, TtsError> {
        drop(locked(voice)?);
        Ok(Self {
            voice: voice.to_string(),
        })
    }
}

impl Synthesizer for Espeak {
    fn synthesize(&self, text: &str) -> Result<Speech, TtsError> {
        let (_guard, rate) = locked(&self.voice)?;
        let c = CString::new(text).map_err(|_| TtsError::Espeak("text has a NUL".into()))?;
        BUFFER.with(|b| b.borrow_mut().clear());
        // SAFETY: `c` is NUL-terminated and alive for the call; in synchronous mode
        // espeak_Synth returns after the last callback; LOCK is held.
        let rc = unsafe {
            sys::espeak_Synth(
                c.as_ptr().cast(),
                c.as_bytes_with_nul().len(),
                0,
                sys::espeak_POSITION_TYPE_POS_CHARACTER,
                0,
                sys::espeakCHARS_UTF8,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != sys::espeak_ERROR_EE_OK {
            return Err(TtsError::Espeak(format!("espeak_Synth failed ({rc})")));
        }
        let samples = BUFFER.with(|b| std::mem::take(&mut *b.borrow_mut()));
        Ok(Speech {
            samples: samples
                .into_iter()
                .map(|s| f32::from(s) / 32768.0)
                .collect(),
            sample_rate: rate,
        })
    }
}
