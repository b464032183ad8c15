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
