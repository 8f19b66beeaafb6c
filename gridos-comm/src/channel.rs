//! A bidirectional, method-independent frame channel.

use crate::error::{Error, Result};
use crate::frame::{Frame, FrameLimit, read_frame_limited, write_frame};
use crate::parallel::ParSink;
use crate::select::TransportKind;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Frames kept aside by [`FrameSource::recv`] while it looks for another tag.
pub const MAX_PENDING: usize = 4096;
/// Frames a byte-stream channel reads ahead of its consumer.
pub const READ_AHEAD: usize = 64;
/// The same for a channel accepted with a small initial receive limit
/// ([`Listener::set_initial_recv_limit`](crate::Listener::set_initial_recv_limit)): a peer
/// not yet trusted makes the reader buffer at most this many frames.
pub const UNTRUSTED_READ_AHEAD: usize = 4;

/// The sending half of a [`Channel`].
pub struct FrameSink {
    inner: SinkInner,
    max_frame: u32,
}

pub(crate) enum SinkInner {
    InProc(mpsc::Sender<Result<Frame>>),
    Stream(Box<dyn AsyncWrite + Send + Unpin>),
    Parallel(ParSink),
}

impl FrameSink {
    pub(crate) fn new(inner: SinkInner, max_frame: u32) -> Self {
        FrameSink { inner, max_frame }
    }

    /// Sends one frame. A frame larger than the channel's maximum is refused here, before
    /// anything is written, so the connection stays usable.
    pub async fn send(&mut self, f: &Frame) -> Result<()> {
        let body = f.encode()?.len() as u64 - 4;
        if body > self.max_frame as u64 {
            return Err(Error::FrameTooLarge {
                len: body,
                max: self.max_frame,
            });
        }
        match &mut self.inner {
            SinkInner::InProc(tx) => tx.send(Ok(f.clone())).await.map_err(|_| Error::Closed),
            SinkInner::Stream(w) => write_frame(w, f).await,
            SinkInner::Parallel(p) => p.send(f).await,
        }
    }
}

/// The receiving half of a [`Channel`]. Reading happens in a background task, so `recv` with a
/// timeout is cancel-safe: a frame that arrives late is kept for the next call.
pub struct FrameSource {
    rx: mpsc::Receiver<Result<Frame>>,
    pending: VecDeque<Frame>,
    broken: Option<String>,
    limit: FrameLimit,
}

impl FrameSource {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Frame>>, limit: FrameLimit) -> Self {
        FrameSource {
            rx,
            pending: VecDeque::new(),
            broken: None,
            limit,
        }
    }

    /// Wraps a byte stream: a task reads frames (at most `limit` bytes each, and at most
    /// `read_ahead` frames ahead of the consumer) until EOF or the first error, which is
    /// delivered once and ends the stream.
    pub(crate) fn from_stream<R>(mut r: R, limit: FrameLimit, read_ahead: usize) -> Self
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(read_ahead.max(1));
        let lim = limit.clone();
        tokio::spawn(async move {
            loop {
                let res = tokio::select! {
                    r = read_frame_limited(&mut r, &lim) => r,
                    // The FrameSource was dropped: stop reading so the stream closes.
                    _ = tx.closed() => return,
                };
                match res {
                    Ok(Some(f)) => {
                        if tx.send(Ok(f)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        FrameSource::new(rx, limit)
    }

    /// The largest frame this side accepts from the peer; [`FrameLimit::set`] changes it for
    /// the frames that follow. A frame over it ends the channel with
    /// [`Error::FrameTooLarge`], its body unread. (In-process channels pass frames without
    /// encoding them; there the sender's maximum is the only bound.)
    pub fn recv_limit(&self) -> &FrameLimit {
        &self.limit
    }

    /// Receives the next frame whose tag is `tag` (any tag if `None`), waiting at most
    /// `timeout` (forever if `None`). Frames with other tags are kept, in order, for later calls.
    pub async fn recv(&mut self, tag: Option<u32>, timeout: Option<Duration>) -> Result<Frame> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|f| tag.is_none_or(|t| f.tag == t))
        {
            return Ok(self.pending.remove(i).expect("index from position"));
        }
        match timeout {
            None => self.recv_inner(tag).await,
            Some(d) => tokio::time::timeout(d, self.recv_inner(tag))
                .await
                .map_err(|_| Error::Timeout(d))?,
        }
    }

    async fn recv_inner(&mut self, tag: Option<u32>) -> Result<Frame> {
        loop {
            if let Some(reason) = &self.broken {
                return Err(Error::BadFrame(format!(
                    "channel unusable after earlier error: {reason}"
                )));
            }
            match self.rx.recv().await {
                None => return Err(Error::Closed),
                Some(Err(e)) => {
                    self.broken = Some(e.to_string());
                    return Err(e);
                }
                Some(Ok(f)) => {
                    if tag.is_none_or(|t| f.tag == t) {
                        return Ok(f);
                    }
                    if self.pending.len() >= MAX_PENDING {
                        return Err(Error::BadFrame(format!(
                            "more than {MAX_PENDING} frames with other tags queued while waiting for tag {tag:?}"
                        )));
                    }
                    self.pending.push_back(f);
                }
            }
        }
    }
}

/// A connection to one peer, whatever the transport. Obtained from
/// [`Connector::connect`](crate::Connector::connect) or a [`Listener`](crate::Listener).
pub struct Channel {
    sink: FrameSink,
    source: FrameSource,
    method: TransportKind,
}

impl Channel {
    pub(crate) fn new(sink: FrameSink, source: FrameSource, method: TransportKind) -> Self {
        Channel {
            sink,
            source,
            method,
        }
    }

    /// The transport carrying this channel.
    pub fn method(&self) -> TransportKind {
        self.method
    }
    /// Sends a frame.
    pub async fn send(&mut self, f: &Frame) -> Result<()> {
        self.sink.send(f).await
    }
    /// The receive limit (see [`FrameSource::recv_limit`]).
    pub fn recv_limit(&self) -> &FrameLimit {
        self.source.recv_limit()
    }
    /// Receives a frame (see [`FrameSource::recv`]).
    pub async fn recv(&mut self, tag: Option<u32>, timeout: Option<Duration>) -> Result<Frame> {
        self.source.recv(tag, timeout).await
    }
    /// Splits into halves usable from different tasks.
    pub fn into_split(self) -> (FrameSink, FrameSource) {
        (self.sink, self.source)
    }
}
