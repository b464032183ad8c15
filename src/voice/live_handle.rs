//! The D-Bus methods' way into the live voice loop (`Listen()`, `StopListening()`), and why
//! it may refuse. Apart from the loop itself, so that the voice's handle can hold it.

use tokio::sync::{mpsc, oneshot};

/// Why a live-voice request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LiveError {
    #[error("no microphone: {0}")]
    NoMicrophone(String),
    #[error("not listening: call Listen() first")]
    NotListening,
    #[error("nothing was heard before StopListening()")]
    NothingHeard,
    #[error("the voice loop has stopped (the microphone failed; see the journal)")]
    Stopped,
}

pub(super) enum Command {
    Listen(oneshot::Sender<Result<(), LiveError>>),
    StopListening(oneshot::Sender<Result<(), LiveError>>),
}

/// The D-Bus methods' way into the loop.
#[derive(Clone)]
pub struct LiveHandle {
    pub(super) tx: mpsc::Sender<Command>,
}

impl LiveHandle {
    pub async fn listen(&self) -> Result<(), LiveError> {
        self.call(Command::Listen).await
    }

    pub async fn stop_listening(&self) -> Result<(), LiveError> {
        self.call(Command::StopListening).await
    }

    async fn call(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), LiveError>>) -> Command,
    ) -> Result<(), LiveError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| LiveError::Stopped)?;
        rx.await.map_err(|_| LiveError::Stopped)?
    }
}
