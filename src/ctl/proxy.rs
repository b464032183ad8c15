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
    fn ask(&self, text: &str, options: HashMap<&str, zbus::Variant<'_>>) -> zbus::Result<String>;
    fn listen_wav(
        &self,
        wav: &[u8],
        options: HashMap<&str, zbus::Variant<'_>>,
    ) -> zbus::Result<String>;
    fn abort(&self) -> zbus::Result<()>;
    fn rebenchmark(&self) -> zbus::Result<()>;
    #[allow(clippy::type_complexity)] // the D-Bus signature (a{sv}, aa{sv}) spelled out
    fn plan(
        &self,
    ) -> zbus::Result<(
        HashMap<String, OwnedVariant>,
        Vec<HashMap<String, OwnedVariant>>,
    )>;
    #[zbus(signal)]
    fn token(&self, turn_id: String, piece: String) -> zbus::Result<()>;
    #[zbus(signal)]
    fn speech(&self, turn_id: String, sample_rate: u32, pcm: Vec<u8>) -> zbus::Result<()>;
    #[zbus(signal)]
    fn answer_finished(
        &self,
        turn_id: String,
        stats: HashMap<String, OwnedVariant>,
    ) -> zbus::Result<()>;
    #[zbus(property)]
    fn backend(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn model(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn model_bytes(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bandwidth_measured(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn bandwidth_theoretical(&self) -> zbus::Result<f64>;
    #[zbus(property)]
    fn predicted_tokens_per_second(&self) -> zbus::Result<f64>;
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
