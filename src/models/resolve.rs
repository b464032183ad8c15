//! From the `[llm] model` setting (or `SelectModel`'s argument) to a file to load: a catalog
//! name is looked up and found in the models folder; anything with a `/` is a path.

use std::path::{Path, PathBuf};

use super::{Catalog, Kind, Model, Presence, presence};

/// Why a model cannot be loaded before the engine even tries.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResolveError {
    #[error("no model named '{name}' in the catalog {catalog} (known: {known})")]
    Unknown {
        name: String,
        catalog: String,
        known: String,
    },
    #[error(
        "model '{name}' is in the catalog but not in {dir}: fetch it with `tutorctl models fetch {name}`"
    )]
    NotFetched { name: String, dir: PathBuf },
    #[error("model '{name}': {why}")]
    Broken { name: String, why: String },
    /// A path a caller gave over D-Bus that is not a regular file inside the models folder.
    /// Said the same whatever the reason (absent, a link, a FIFO, outside the folder), so
    /// that the call cannot probe the file system.
    #[error(
        "a model path must name a regular file under {dir} (no links, no '..'); give a catalog name or such a file"
    )]
    NotSelectable { dir: PathBuf },
}

/// Checks a model path given at run time (`SelectModel`), before anything opens it for the
/// engine: an absolute path under the models folder `dir`, without `.`/`..` components, no
/// symbolic link on the way below `dir`, naming a regular file. The file itself is opened with
/// `O_NOFOLLOW | O_NONBLOCK`, so neither a link swapped in nor a FIFO can redirect or block
/// the call. The config's own `[llm] model` path is root's and is not checked this way.
pub fn selectable_path(spec: &str, dir: &Path) -> Result<PathBuf, ResolveError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Component;
    let refuse = || ResolveError::NotSelectable {
        dir: dir.to_path_buf(),
    };
    let path = Path::new(spec);
    if !path.is_absolute()
        || !path.starts_with(dir)
        || path
            .components()
            .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(refuse());
    }
    // Every component below `dir`: a real directory or, last, the file; never a link.
    let rest = path.strip_prefix(dir).map_err(|_| refuse())?;
    let mut at = dir.to_path_buf();
    for c in rest.components() {
        at.push(c);
        let meta = std::fs::symlink_metadata(&at).map_err(|_| refuse())?;
        if meta.file_type().is_symlink() {
            return Err(refuse());
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|_| refuse())?;
    let meta = file.metadata().map_err(|_| refuse())?;
    if !meta.file_type().is_file() {
        return Err(refuse());
    }
    Ok(path.to_path_buf())
}

/// A model ready to hand to the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub path: PathBuf,
    /// The catalog entry, when the model was named rather than given as a path.
    pub entry: Option<Model>,
}

/// Resolves `spec` (a catalog name, or a path when it contains `/`) to an LLM.
pub fn resolve(spec: &str, catalog: &Catalog, dir: &Path) -> Result<Resolved, ResolveError> {
    resolve_kind(spec, catalog, dir, Kind::Llm)
}

/// Resolves `spec` to a model of `kind`: `[voice] stt_model` names a whisper model.
pub fn resolve_kind(
    spec: &str,
    catalog: &Catalog,
    dir: &Path,
    kind: Kind,
) -> Result<Resolved, ResolveError> {
    if spec.contains('/') {
        return Ok(Resolved {
            path: PathBuf::from(spec),
            entry: None,
        });
    }
    let Some(model) = catalog.get(spec) else {
        return Err(ResolveError::Unknown {
            name: spec.chars().take(80).collect(),
            catalog: catalog.origin.clone(),
            known: catalog
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    if model.kind != kind {
        return Err(ResolveError::Broken {
            name: model.name.clone(),
            why: match model.kind {
                Kind::Whisper => {
                    "a speech-to-text model, not an LLM: it goes in `[voice] stt_model`"
                }
                Kind::Llm => "an LLM, not a speech-to-text model: it goes in `[llm] model`",
                Kind::Voice => "a text-to-speech voice: it goes in `[voice] tts_voice`",
                Kind::Runtime => "a runtime library: it goes in `[voice] tts_runtime`",
            }
            .into(),
        });
    }
    // A size check only: hashing a multi-GB file at every boot would cost seconds; the
    // fetcher verified it, and its record notices later changes.
    match presence(model, dir, false) {
        Ok(Presence::Missing) => Err(ResolveError::NotFetched {
            name: model.name.clone(),
            dir: dir.to_path_buf(),
        }),
        Ok(Presence::Wrong(why)) => Err(ResolveError::Broken {
            name: model.name.clone(),
            why: format!(
                "{why}; fetch it again with `tutorctl models fetch {}`",
                model.name
            ),
        }),
        Ok(_) => Ok(Resolved {
            path: model.path_in(dir),
            entry: Some(model.clone()),
        }),
        Err(e) => Err(ResolveError::Broken {
            name: model.name.clone(),
            why: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::parse("test.toml", include_str!("../../config/models.toml")).unwrap()
    }

    #[test]
    fn paths_pass_through() {
        let r = resolve("/m/x.gguf", &catalog(), Path::new("/nonexistent")).unwrap();
        assert_eq!(r.path, PathBuf::from("/m/x.gguf"));
        assert!(r.entry.is_none());
    }

    #[test]
    fn a_selected_path_must_be_a_regular_file_under_the_models_folder() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("models");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let good = dir.join("sub/m.gguf");
        std::fs::write(&good, b"GGUF").unwrap();
        let outside = d.path().join("secret.gguf");
        std::fs::write(&outside, b"GGUF").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link.gguf")).unwrap();
        std::os::unix::fs::symlink(d.path(), dir.join("up")).unwrap();
        let fifo = dir.join("fifo.gguf");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

        assert_eq!(selectable_path(good.to_str().unwrap(), &dir).unwrap(), good);
        let refused = |p: &Path| {
            selectable_path(p.to_str().unwrap(), &dir)
                .unwrap_err()
                .to_string()
        };
        let expected = format!(
            "a model path must name a regular file under {} (no links, no '..'); give a catalog \
             name or such a file",
            dir.display()
        );
        for p in [
            outside.clone(),                    // outside the folder
            dir.join("link.gguf"),              // a link to it
            dir.join("up/secret.gguf"),         // through a linked directory
            dir.join("sub/../../secret.gguf"),  // '..'
            dir.join("absent.gguf"),            // absent: said the same way
            dir.join("sub"),                    // a directory
            fifo.clone(),                       // a FIFO: refused at once, never blocks
            PathBuf::from("models/sub/m.gguf"), // relative
        ] {
            assert_eq!(refused(&p), expected, "{}", p.display());
        }
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = resolve("gpt-17", &catalog(), Path::new("/x")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("no model named 'gpt-17' in the catalog test.toml"),
            "{msg}"
        );
        assert!(msg.contains("smollm2-135m-q4_1"), "{msg}");
    }

    #[test]
    fn a_model_of_the_other_kind_is_refused() {
        let dir = Path::new("/nonexistent");
        let err = resolve("whisper-tiny.en", &catalog(), dir).unwrap_err();
        assert!(err.to_string().contains("`[voice] stt_model`"), "{err}");
        let err = resolve_kind("smollm2-135m-q4_1", &catalog(), dir, Kind::Whisper).unwrap_err();
        assert!(err.to_string().contains("`[llm] model`"), "{err}");
        let err = resolve_kind("whisper-tiny.en", &catalog(), dir, Kind::Whisper).unwrap_err();
        assert!(matches!(err, ResolveError::NotFetched { .. }), "{err}");
    }

    #[test]
    fn missing_and_wrong_files_say_how_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("smollm2-135m-q4_1", &catalog(), dir.path()).unwrap_err();
        assert!(matches!(err, ResolveError::NotFetched { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("tutorctl models fetch smollm2-135m-q4_1")
        );
        std::fs::write(dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"), b"short").unwrap();
        let err = resolve("smollm2-135m-q4_1", &catalog(), dir.path()).unwrap_err();
        assert!(matches!(err, ResolveError::Broken { .. }), "{err}");
    }
}
