//! Per-peer failure events.

use crate::select::TransportKind;
use tokio::sync::broadcast;

/// Something that happened to a peer connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection to `peer` is up over `method`.
    Up {
        /// Peer name.
        peer: String,
        /// Transport in use.
        method: TransportKind,
    },
    /// The connection to `peer` failed or closed.
    Down {
        /// Peer name.
        peer: String,
        /// What happened.
        reason: String,
    },
}

/// A broadcast hub for [`PeerEvent`]s: publishers call [`emit`](PeerEvents::emit), anyone can
/// [`subscribe`](PeerEvents::subscribe).
#[derive(Clone)]
pub struct PeerEvents {
    tx: broadcast::Sender<PeerEvent>,
}

impl Default for PeerEvents {
    fn default() -> Self {
        PeerEvents {
            tx: broadcast::channel(256).0,
        }
    }
}

impl PeerEvents {
    /// Publishes an event (dropped if nobody listens).
    pub fn emit(&self, ev: PeerEvent) {
        tracing::debug!(?ev, "peer event");
        let _ = self.tx.send(ev);
    }
    /// A new subscription, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.tx.subscribe()
    }
}
