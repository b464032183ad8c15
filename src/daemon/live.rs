//! The live voice loop's way to the tutor: what the microphone heard becomes a turn like
//! `ListenWav`'s, its answer spoken on the loudspeaker. The daemon wires the two domains
//! here so that the voice never depends on the tutor.

use tokio::sync::oneshot;

use crate::sync::Cancel;
use crate::tutor::{AskOptions, Origin, Service};
use crate::voice::pipeline::Heard;

pub(super) struct Host {
    tutor: Service,
}

impl Host {
    pub fn new(tutor: Service) -> Self {
        Self { tutor }
    }
}

impl crate::voice::live::Host for Host {
    fn abort(&self) {
        self.tutor.abort();
    }

    fn ask(&self, heard: Heard, cancel: Cancel) -> Result<(String, oneshot::Receiver<()>), String> {
        let (done, rx) = oneshot::channel();
        let text = heard.text.clone();
        let origin = Origin::Live {
            heard,
            cancel,
            done,
        };
        let turn = self
            .tutor
            .ask(&text, AskOptions::default(), origin)
            .map_err(|e| e.to_string())?;
        Ok((turn, rx))
    }
}
