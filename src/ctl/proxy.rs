//! The client proxy of `org.tutord.Tutor1`; it mirrors `bus::tutor`.

use std::collections::HashMap;

use zbus::{OwnedVariant, proxy};

#[proxy(
    interface = "org.tutord.Tutor1",
    default_service = "org.tutord.Tutor1",
    default_path = "/org/tutord/Tutor1"
)]
pub trait Tutor {
    fn diagnostics(&self) -> zbus::Result<HashMap<String, OwnedVariant>>;
    fn set_log_level(&self, level: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status_text(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn progress(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn board(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn last_error(&self) -> zbus::Result<String>;
}
