//! Opening the runtime library and checking the machine: the file is a library for this
//! architecture, an RKLLM runtime of the 1.3.x ABI with every entry point this backend calls,
//! and the NPU kernel driver is new enough. Every refusal is an `Unavailable` error that names
//! the file and what was found in it.

use std::ffi::c_void;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libloading::Library;

use super::version::{self, Found, MIN_DRIVER, Version};
use super::{RkllmOptions, sys, unavailable};
use crate::engine::EngineError;

/// The opened runtime library: its entry points and what was learnt about it.
pub(super) struct Runtime {
    pub(super) create_default_param: sys::CreateDefaultParamFn,
    pub(super) init: sys::InitFn,
    pub(super) run: sys::RunFn,
    pub(super) abort: sys::AbortFn,
    pub(super) clear_kv_cache: sys::ClearKvCacheFn,
    pub(super) destroy: sys::DestroyFn,
    pub(super) version: Version,
    /// Keeps the code the function pointers above point into mapped.
    _lib: Library,
}

fn symbol_name(sym: &[u8]) -> &str {
    std::str::from_utf8(sym.strip_suffix(b"\0").unwrap_or(sym)).unwrap_or("?")
}

/// Turns dlopen's message into one that says what to do.
fn dlopen_error(library: &Path, e: &libloading::Error) -> EngineError {
    let msg = e.to_string();
    let shown = library.display();
    let reason = if msg.contains("wrong ELF class") || msg.contains("ELF file") {
        format!(
            "runtime library {shown} cannot be loaded on this machine ({msg}): it is built for \
             another architecture, or damaged; Rockchip ships librkllmrt.so for aarch64 only"
        )
    } else if msg.contains("No such file") {
        format!(
            "runtime library {shown} not found ({msg}); install Rockchip's librkllmrt.so 1.3.x \
             or point runtime_library at it"
        )
    } else {
        format!("cannot load runtime library {shown}: {msg}")
    };
    unavailable(reason)
}

/// The file a loaded address belongs to, from `/proc/self/maps` (for a library opened by bare
/// name through the loader's search path).
fn mapped_file(addr: usize) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let (range, _) = line.split_once(' ')?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let path = &line[line.find('/')?..];
        (start <= addr && addr < end).then(|| PathBuf::from(path))
    })
}

impl Runtime {
    pub(super) fn open(library: &Path, options: &RkllmOptions) -> Result<Self, EngineError> {
        let shown = library.display();
        let by_path = library.as_os_str().as_bytes().contains(&b'/');
        if by_path {
            // Check the file before dlopen runs any of its code, and say more than dlopen.
            let head = read_head(library).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => unavailable(format!(
                    "runtime library {shown} not found; install Rockchip's librkllmrt.so 1.3.x \
                     or point runtime_library at it"
                )),
                _ => unavailable(format!("cannot read runtime library {shown}: {e}")),
            })?;
            version::check_elf(&head)
                .map_err(|why| unavailable(format!("runtime library {shown} {why}")))?;
        }
        // SAFETY: opening a library runs its initialisers. This is the file the configuration
        // names as the RKLLM runtime, already checked above to be an ELF library for this
        // machine; nothing else in this process depends on what it initialises.
        let lib = unsafe { Library::new(library) }.map_err(|e| dlopen_error(library, &e))?;
        // SAFETY: only the symbol's address is read (as a data pointer); nothing is called.
        let init_addr = unsafe { lib.get::<*const c_void>(sys::SYM_INIT) }
            .ok()
            .map(|s| *s as usize);
        let file = if by_path {
            Some(library.to_path_buf())
        } else {
            init_addr.and_then(mapped_file)
        };
        let shown = file.as_deref().unwrap_or(library).display().to_string();
        let found = match &file {
            Some(f) => {
                let bytes = std::fs::read(f).map_err(|e| {
                    unavailable(format!("cannot read runtime library {shown}: {e}"))
                })?;
                version::scan_runtime_version(&bytes)
            }
            None => Found::NotRkllm,
        };
        let missing: Vec<&str> = sys::REQUIRED_SYMBOLS
            .iter()
            // SAFETY: as above, only looks the address up.
            .filter(|sym| unsafe { lib.get::<*const c_void>(sym) }.is_err())
            .map(|sym| symbol_name(sym))
            .collect();
        let found_text = match &found {
            Found::Version(v) => format!("version {v}"),
            Found::Ambiguous(vs) => format!(
                "versions {}",
                vs.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Found::NoVersion | Found::NotRkllm => "no RKLLM runtime version".into(),
        };
        if !missing.is_empty() {
            return Err(unavailable(format!(
                "runtime library {shown} ({found_text} found) is not an RKLLM 1.3.x runtime: it \
                 lacks {}",
                missing.join(", ")
            )));
        }
        let version = match (&options.runtime_version, found) {
            (Some(v), _) => Version::parse(v).ok_or_else(|| {
                unavailable(format!(
                    "runtime_version {v:?} is not a version such as 1.3.0"
                ))
            })?,
            (None, Found::Version(v)) => v,
            (None, _) => {
                return Err(unavailable(format!(
                    "cannot tell which RKLLM runtime {shown} is ({found_text} found in the \
                     file); if its init banner says 1.3.x, set the runtime version in the \
                     configuration"
                )));
            }
        };
        if !version::is_supported_runtime(&version) {
            return Err(unavailable(format!(
                "runtime library {shown} is RKLLM runtime {version}, but tutord binds the 1.3.x \
                 ABI (it changed at 1.3.0); install librkllmrt.so 1.3.x"
            )));
        }
        // SAFETY: each symbol exists (checked above) and is a function of the named 1.3.x
        // signature in a 1.3.x runtime (the version just checked); the pointers are copied out
        // and stay valid while `_lib` keeps the library mapped, which outlives them here.
        unsafe {
            Ok(Self {
                create_default_param: *lib.get(sys::SYM_CREATE_DEFAULT_PARAM).map_err(sym_err)?,
                init: *lib.get(sys::SYM_INIT).map_err(sym_err)?,
                run: *lib.get(sys::SYM_RUN).map_err(sym_err)?,
                abort: *lib.get(sys::SYM_ABORT).map_err(sym_err)?,
                clear_kv_cache: *lib.get(sys::SYM_CLEAR_KV_CACHE).map_err(sym_err)?,
                destroy: *lib.get(sys::SYM_DESTROY).map_err(sym_err)?,
                version,
                _lib: lib,
            })
        }
    }
}

fn sym_err(e: libloading::Error) -> EngineError {
    unavailable(format!("RKLLM runtime symbol lookup: {e}"))
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)?.take(64).read_to_end(&mut head)?;
    Ok(head)
}

/// Checks the NPU kernel driver: readable, and 0.9.8 or newer.
pub(super) fn check_driver(paths: &[PathBuf]) -> Result<Version, EngineError> {
    let (found, from) = version::read_driver_version(paths).map_err(|why| {
        unavailable(format!(
            "cannot read the NPU kernel driver version ({why}); the rknpu driver must be loaded, \
             and its version file readable by this process"
        ))
    })?;
    if found < MIN_DRIVER {
        return Err(unavailable(format!(
            "the NPU kernel driver is {found} (read from {}), older than the {MIN_DRIVER} that \
             RKLLM runtime 1.3.x needs; update the board's kernel",
            from.display()
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_file_an_address_is_mapped_from() {
        let here =
            mapped_file(mapped_file as *const () as usize).expect("this test binary is mapped");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(here.canonicalize().unwrap(), exe.canonicalize().unwrap());
        assert_eq!(mapped_file(0), None);
    }
}
