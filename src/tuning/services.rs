//! Units: which to stop (the image's nonessential defaults, the configured ones, never the
//! protected ones), and systemd's D-Bus API to stop and start them, waiting for each job.
//!
//! The listed units are stopped and started by root (`tutord-tuning.service`, `helper.rs`);
//! tutord itself, as its own user, starts and stops only the package's helper units, which
//! its polkit rule (`systemd/tutord.rules`) names exactly.

use std::time::Duration;

use futures_util::StreamExt;
use zbus::OwnedObjectPath;
use zbus::proxy;

use super::TuningError;

/// Timers and daemons an appliance does not need while it answers questions: indexing,
/// printing, service discovery, modems, a desktop's package GUI back end. Stopped only when
/// running, and started again when tutord stops. Sockets are listed with their services, or
/// the socket would start the service again on the next connection. Security updates are
/// not here (`UPDATES`).
pub const DEFAULT_NONESSENTIAL: &[&str] = &[
    "packagekit.service",
    "man-db.timer",
    "fstrim.timer",
    "e2scrub_all.timer",
    "ModemManager.service",
    "cups.socket",
    "cups.service",
    "cups-browsed.service",
    "avahi-daemon.socket",
    "avahi-daemon.service",
];

/// Debian's security updates: never stopped, even when listed in `stop_units`. An appliance
/// runs for months; stopping them for as long as tutord runs (it runs always) would stop
/// updates for good. The package moves their timers to the night instead
/// (`systemd/updates/`, `/usr/lib/systemd/system/apt-daily*.timer.d/50-tutord.conf`).
pub const UPDATES: &[&str] = &[
    "apt-daily.timer",
    "apt-daily.service",
    "apt-daily-upgrade.timer",
    "apt-daily-upgrade.service",
    "unattended-upgrades.service",
];

/// Never stopped: the bus, the journal, device management, logins and polkit (which tutord
/// needs to start the units again), tutord itself, and the security updates (`UPDATES`).
pub const PROTECTED: &[&str] = &[
    "dbus.service",
    "dbus.socket",
    "dbus-broker.service",
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-journald-dev-log.socket",
    "systemd-journald-audit.socket",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-logind.service",
    "polkit.service",
    "tutord.service",
    "init.scope",
    "-.mount",
    "-.slice",
];

/// Remote access: protected unless the config lists it in `stop_units` by name.
pub const SSH: &[&str] = &["ssh.service", "ssh.socket", "sshd.service"];

/// Unit name suffixes systemd knows.
const SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".timer",
    ".path",
    ".swap",
    ".mount",
    ".automount",
    ".target",
    ".slice",
    ".scope",
    ".device",
];

/// `foo` → `foo.service`, as systemctl reads it.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    if SUFFIXES.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// Whether tutord must never stop `unit` (given the explicitly configured list).
pub fn is_protected(unit: &str, explicit: &[String]) -> bool {
    PROTECTED.contains(&unit)
        || UPDATES.contains(&unit)
        || unit.starts_with("systemd-journald")
        || unit.starts_with("systemd-udevd")
        || unit.starts_with("tutord")
        || (SSH.contains(&unit) && !explicit.iter().any(|e| e == unit))
}

/// The units to stop, in order: the board defaults (when they apply) minus `keep`, then the
/// explicitly configured ones; protected units are left out with a warning.
pub fn candidates(
    board_defaults: bool,
    stop_units: &[String],
    keep_units: &[String],
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let explicit: Vec<String> = stop_units.iter().map(|u| normalize(u)).collect();
    let keep: Vec<String> = keep_units.iter().map(|u| normalize(u)).collect();
    let defaults: &[&str] = if board_defaults {
        DEFAULT_NONESSENTIAL
    } else {
        &[]
    };
    let mut out: Vec<String> = Vec::new();
    for unit in defaults
        .iter()
        .map(|u| u.to_string())
        .chain(explicit.clone())
    {
        if keep.contains(&unit) || out.contains(&unit) {
            continue;
        }
        if is_protected(&unit, &explicit) {
            warnings.push(format!(
                "[tuning] stop_units: {unit} is protected and is never stopped (D-Bus, journald, \
                 udev, logind, polkit, tutord, security updates; ssh only when listed by \
                 name); left running"
            ));
            continue;
        }
        out.push(unit);
    }
    out
}

/// What tuning needs from a service manager; systemd over D-Bus on a board, a fake in tests.
pub trait Units {
    /// The unit's `(LoadState, ActiveState)`, e.g. `("loaded", "active")`,
    /// `("not-found", "inactive")`.
    fn state(
        &self,
        unit: &str,
    ) -> impl std::future::Future<Output = Result<(String, String), TuningError>>;
    /// Stops the unit and waits for the job to finish.
    fn stop(&self, unit: &str) -> impl std::future::Future<Output = Result<(), TuningError>>;
    /// Starts the unit and waits for the job to finish.
    fn start(&self, unit: &str) -> impl std::future::Future<Output = Result<(), TuningError>>;
    /// Queues a start job and returns without waiting for it (the helper's restore).
    fn enqueue_start(
        &self,
        unit: &str,
    ) -> impl std::future::Future<Output = Result<(), TuningError>> {
        self.start(unit)
    }
}

/// Whether an ActiveState means the unit runs (so stopping it changes something).
pub fn is_running(active_state: &str) -> bool {
    matches!(active_state, "active" | "activating" | "reloading")
}

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: &[(&str, zbus::Variant<'_>)],
    ) -> zbus::Result<()>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1"
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
}

/// How long one start or stop job may take: systemd's default stop timeout is 90 s, but an
/// appliance's boot should not hang on one unit for that long.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// systemd's manager on the system bus.
pub struct Systemd {
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
}

impl Systemd {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set).
    pub async fn connect() -> Result<Self, TuningError> {
        let conn = zbus::Connection::system()
            .await
            .map_err(TuningError::Connect)?;
        let manager = ManagerProxy::new(&conn)
            .await
            .map_err(TuningError::Connect)?;
        // Older systemd emits job signals only to subscribers; harmless where it does not.
        if let Err(e) = manager.subscribe().await {
            tracing::debug!("systemd Subscribe: {e}");
        }
        Ok(Self { conn, manager })
    }

    /// Sets `MemoryHigh=` and `MemoryMax=` of `unit` until the next reboot (root's
    /// `tutord memory-limit`, `memory.rs`).
    pub async fn set_memory_limits(
        &self,
        unit: &str,
        high: u64,
        max: u64,
    ) -> Result<(), TuningError> {
        use zbus::Variant;
        self.manager
            .set_unit_properties(
                unit,
                true,
                &[
                    ("MemoryHigh", Variant::U64(high)),
                    ("MemoryMax", Variant::U64(max)),
                ],
            )
            .await
            .map_err(|e| TuningError::SetProperties {
                unit: unit.to_string(),
                reason: e.to_string(),
            })
    }

    async fn job(&self, verb: &'static str, unit: &str) -> Result<(), TuningError> {
        // Listen before asking, so a job that finishes at once is not missed.
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .map_err(|e| unit_error(verb, unit, e))?;
        let job = match verb {
            "stop" => self.manager.stop_unit(unit, "replace").await,
            _ => self.manager.start_unit(unit, "replace").await,
        }
        .map_err(|e| unit_error(verb, unit, e))?;
        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job == job {
                    return Some(args.result.clone());
                }
            }
            None
        };
        match tokio::time::timeout(JOB_TIMEOUT, wait).await {
            Ok(Some(result)) if result == "done" => Ok(()),
            Ok(Some(result)) => Err(TuningError::Job {
                verb,
                unit: unit.to_string(),
                result,
            }),
            Ok(None) => Err(TuningError::Unit {
                verb,
                unit: unit.to_string(),
                reason: "the bus connection closed while waiting for the job".into(),
            }),
            Err(_) => Err(TuningError::Timeout {
                verb,
                unit: unit.to_string(),
                secs: JOB_TIMEOUT.as_secs(),
            }),
        }
    }
}

fn unit_error(verb: &'static str, unit: &str, e: zbus::Error) -> TuningError {
    // zbus reports these as method errors or as its fdo::Error variants: tell by name.
    let text = e.to_string();
    let reason = if text.contains("org.freedesktop.DBus.Error.AccessDenied")
        || text.contains("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired")
    {
        format!(
            "{text} (polkit refused: tutord may start and stop only its own helper units, \
             /usr/share/polkit-1/rules.d/50-tutord.rules)"
        )
    } else {
        text
    };
    TuningError::Unit {
        verb,
        unit: unit.to_string(),
        reason,
    }
}

impl Units for Systemd {
    async fn state(&self, unit: &str) -> Result<(String, String), TuningError> {
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(|e| unit_error("look up", unit, e))?;
        let proxy = UnitProxy::builder(&self.conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(|e| unit_error("look up", unit, e))?;
        let load = proxy
            .load_state()
            .await
            .map_err(|e| unit_error("look up", unit, e))?;
        let active = proxy
            .active_state()
            .await
            .map_err(|e| unit_error("look up", unit, e))?;
        Ok((load, active))
    }

    async fn stop(&self, unit: &str) -> Result<(), TuningError> {
        self.job("stop", unit).await
    }

    async fn start(&self, unit: &str) -> Result<(), TuningError> {
        self.job("start", unit).await
    }

    async fn enqueue_start(&self, unit: &str) -> Result<(), TuningError> {
        self.manager
            .start_unit(unit, "replace")
            .await
            .map(|_| ())
            .map_err(|e| unit_error("start", unit, e))
    }
}
