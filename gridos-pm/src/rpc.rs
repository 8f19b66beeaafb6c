//! Multiplexed request/response over one comm [`Channel`]: many requests in flight, responses
//! matched by id. Used by clients and by node-to-node links.

use crate::error::{Error, Result};
use crate::proto::{self, Envelope, Request, Response, TAG_REQUEST, TAG_RESPONSE};
use gridos_comm::{Channel, Frame, Gpid, TransportKind};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

type Reply = oneshot::Sender<Result<(Response, Vec<u8>)>>;

struct Pending {
    map: HashMap<u64, Reply>,
    closed: Option<Error>,
}

/// The calling side of a control connection.
pub struct RpcConn {
    tx: mpsc::Sender<Frame>,
    pending: Arc<Mutex<Pending>>,
    next: AtomicU64,
    me: Gpid,
    peer: Gpid,
    method: TransportKind,
    closed_rx: watch::Receiver<bool>,
    abort: Arc<dyn Fn(String) + Send + Sync>,
}

impl RpcConn {
    /// Starts reader and writer tasks on `ch`. When the connection ends, every outstanding and
    /// later call fails with `on_close(reason)`.
    pub fn start(
        ch: Channel,
        me: Gpid,
        peer: Gpid,
        on_close: impl Fn(String) -> Error + Send + Sync + 'static,
    ) -> RpcConn {
        let method = ch.method();
        let (mut sink, mut source) = ch.into_split();
        let (tx, mut rx) = mpsc::channel::<Frame>(64);
        let pending = Arc::new(Mutex::new(Pending {
            map: HashMap::new(),
            closed: None,
        }));
        let (closed_tx, closed_rx) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        let fail_all = {
            let pending = pending.clone();
            let closed_tx = closed_tx.clone();
            move |reason: String| {
                let err = on_close(reason);
                let mut p = pending.lock().expect("poisoned");
                if p.closed.is_none() {
                    p.closed = Some(err.clone());
                }
                for (_, r) in p.map.drain() {
                    let _ = r.send(Err(err.clone()));
                }
                let _ = closed_tx.send(true);
            }
        };
        let fail_all = Arc::new(fail_all);
        let f1 = fail_all.clone();
        let abort: Arc<dyn Fn(String) + Send + Sync> = fail_all.clone();
        let mut stop = closed_rx.clone();
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if let Err(e) = sink.send(&f).await {
                    f1(format!("send failed: {e}"));
                    return;
                }
            }
        });
        let p2 = pending.clone();
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    r = source.recv(Some(TAG_RESPONSE), None) => r,
                    // Aborted (e.g. heartbeat lost): stop reading, dropping the connection.
                    _ = stop.wait_for(|c| *c) => return,
                };
                let f = match got {
                    Ok(f) => f,
                    Err(e) => {
                        fail_all(match e {
                            gridos_comm::Error::Closed => "connection closed".to_string(),
                            e => e.to_string(),
                        });
                        return;
                    }
                };
                match proto::decode::<Response>(&f.payload) {
                    Ok((env, blob)) => {
                        if env.id == 0 {
                            // A connection-level error from the other side (e.g. it could not
                            // decode something we sent).
                            if let Response::Error { error } = env.body {
                                tracing::warn!(%error, "peer reported a connection error");
                            }
                            continue;
                        }
                        let r = p2.lock().expect("poisoned").map.remove(&env.id);
                        if let Some(r) = r {
                            let _ = r.send(match env.body {
                                Response::Error { error } => Err(error),
                                other => Ok((other, blob)),
                            });
                        }
                    }
                    Err(e) => {
                        fail_all(format!("undecodable response: {e}"));
                        return;
                    }
                }
            }
        });
        RpcConn {
            tx,
            pending,
            next: AtomicU64::new(1),
            me,
            peer,
            method,
            closed_rx,
            abort,
        }
    }

    /// The transport in use.
    pub fn method(&self) -> TransportKind {
        self.method
    }

    /// Ends the connection: outstanding calls fail with the `on_close` error for `reason`.
    pub fn abort(&self, reason: &str) {
        (self.abort)(reason.to_string());
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed_rx.borrow()
    }

    /// Resolves when the connection ends.
    pub async fn closed(&self) {
        let mut rx = self.closed_rx.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Sends a request and waits for its response (at most `timeout`).
    pub async fn call(
        &self,
        req: Request,
        blob: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(Response, Vec<u8>)> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let payload = proto::encode(&Envelope { id, body: req }, blob)?;
        let (rtx, rrx) = oneshot::channel();
        {
            let mut p = self.pending.lock().expect("poisoned");
            if let Some(e) = &p.closed {
                return Err(e.clone());
            }
            p.map.insert(id, rtx);
        }
        let frame = Frame {
            src: self.me.clone(),
            dst: self.peer.clone(),
            tag: TAG_REQUEST,
            payload,
        };
        if self.tx.send(frame).await.is_err() {
            self.pending.lock().expect("poisoned").map.remove(&id);
            return Err(self
                .pending
                .lock()
                .expect("poisoned")
                .closed
                .clone()
                .unwrap_or(Error::Comm("connection closed".into())));
        }
        let res = match timeout {
            None => rrx.await,
            Some(d) => match tokio::time::timeout(d, rrx).await {
                Ok(r) => r,
                Err(_) => {
                    self.pending.lock().expect("poisoned").map.remove(&id);
                    return Err(Error::Timeout(format!("no response within {d:?}")));
                }
            },
        };
        res.unwrap_or_else(|_| Err(Error::Comm("connection closed".into())))
    }
}
