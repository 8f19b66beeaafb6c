//! Parallel TCP: one logical channel striped over several TCP connections, for bulk transfer on
//! paths with a large bandwidth × delay product (the GridFTP idea applied to messages).
//!
//! Each stream starts with a preamble `"GPAR" | u64 session | u8 index | u8 count`. After it,
//! both directions carry chunks `u64 seq | u32 total | u32 offset | u32 len | bytes`, where the
//! concatenation of a sequence number's chunks is one encoded [`Frame`] (with its length
//! prefix). Small frames travel whole on one stream; large ones are split over all streams and
//! written concurrently by one task per stream. The receiver reassembles and delivers frames in
//! sequence order.

use crate::channel::{Channel, FrameSink, FrameSource, SinkInner};
use crate::error::{Error, Result};
use crate::frame::{Frame, FrameLimit};
use crate::select::TransportKind;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const MAGIC: &[u8; 4] = b"GPAR";
/// Most streams one parallel channel may use.
pub const MAX_STREAMS: u8 = 16;
/// Frames below this size are not split.
const SPLIT_THRESHOLD: usize = 64 * 1024;
/// Most partially received frames kept at once.
const MAX_INFLIGHT: usize = 256;

struct Chunk {
    seq: u64,
    total: u32,
    off: u32,
    data: Vec<u8>,
}

pub(crate) struct ParSink {
    writers: Vec<mpsc::Sender<Chunk>>,
    seq: u64,
    error: Arc<Mutex<Option<String>>>,
}

impl ParSink {
    pub(crate) async fn send(&mut self, f: &Frame) -> Result<()> {
        if let Some(e) = self.error.lock().expect("poisoned").clone() {
            return Err(Error::Io(std::io::Error::other(e)));
        }
        let bytes = f.encode()?;
        let total = bytes.len() as u32;
        let seq = self.seq;
        self.seq += 1;
        let n = self.writers.len();
        if bytes.len() < SPLIT_THRESHOLD || n == 1 {
            let w = &self.writers[(seq % n as u64) as usize];
            return w
                .send(Chunk {
                    seq,
                    total,
                    off: 0,
                    data: bytes,
                })
                .await
                .map_err(|_| Error::Closed);
        }
        let per = bytes.len().div_ceil(n);
        for (i, part) in bytes.chunks(per).enumerate() {
            let c = Chunk {
                seq,
                total,
                off: (i * per) as u32,
                data: part.to_vec(),
            };
            self.writers[i].send(c).await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }
}

fn build(streams: Vec<TcpStream>, max_frame: u32) -> Channel {
    let limit = FrameLimit::new(max_frame);
    let error = Arc::new(Mutex::new(None::<String>));
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Chunk>>(64);
    let mut writers = Vec::new();
    for s in streams {
        let _ = s.set_nodelay(true);
        let (mut r, mut w) = s.into_split();
        let (tx, mut rx) = mpsc::channel::<Chunk>(4);
        writers.push(tx);
        let err = error.clone();
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                let mut hdr = Vec::with_capacity(20);
                hdr.extend_from_slice(&c.seq.to_be_bytes());
                hdr.extend_from_slice(&c.total.to_be_bytes());
                hdr.extend_from_slice(&c.off.to_be_bytes());
                hdr.extend_from_slice(&(c.data.len() as u32).to_be_bytes());
                let res = async {
                    w.write_all(&hdr).await?;
                    w.write_all(&c.data).await
                }
                .await;
                if let Err(e) = res {
                    *err.lock().expect("poisoned") = Some(format!("parallel stream write: {e}"));
                    return;
                }
            }
        });
        let ctx = chunk_tx.clone();
        let lim = limit.clone();
        tokio::spawn(async move {
            loop {
                let mut hdr = [0u8; 20];
                match r.read_exact(&mut hdr).await {
                    Ok(_) => {}
                    Err(_) => {
                        let _ = ctx.send(Err(Error::Closed)).await;
                        return;
                    }
                }
                let seq = u64::from_be_bytes(hdr[0..8].try_into().expect("8 bytes"));
                let total = u32::from_be_bytes(hdr[8..12].try_into().expect("4 bytes"));
                let off = u32::from_be_bytes(hdr[12..16].try_into().expect("4 bytes"));
                let len = u32::from_be_bytes(hdr[16..20].try_into().expect("4 bytes"));
                let max = lim.get();
                if total < 4 || total - 4 > max {
                    let _ = ctx
                        .send(Err(Error::FrameTooLarge {
                            len: total as u64,
                            max,
                        }))
                        .await;
                    return;
                }
                if off.checked_add(len).is_none_or(|end| end > total) {
                    let _ = ctx
                        .send(Err(Error::BadFrame("chunk outside its frame".into())))
                        .await;
                    return;
                }
                let mut data = vec![0u8; len as usize];
                if r.read_exact(&mut data).await.is_err() {
                    let _ = ctx.send(Err(Error::Closed)).await;
                    return;
                }
                if ctx
                    .send(Ok(Chunk {
                        seq,
                        total,
                        off,
                        data,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    drop(chunk_tx);
    let (out_tx, out_rx) = mpsc::channel::<Result<Frame>>(64);
    tokio::spawn(async move {
        let mut partial: HashMap<u64, (Vec<u8>, u32)> = HashMap::new();
        let mut ready: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut next = 0u64;
        while let Some(c) = chunk_rx.recv().await {
            let c = match c {
                Ok(c) => c,
                Err(e) => {
                    let _ = out_tx.send(Err(e)).await;
                    return;
                }
            };
            if c.seq < next || ready.contains_key(&c.seq) {
                let _ = out_tx
                    .send(Err(Error::BadFrame("duplicate chunk".into())))
                    .await;
                return;
            }
            if !partial.contains_key(&c.seq) && partial.len() >= MAX_INFLIGHT {
                let _ = out_tx
                    .send(Err(Error::BadFrame("too many partial frames".into())))
                    .await;
                return;
            }
            let entry = partial
                .entry(c.seq)
                .or_insert_with(|| (vec![0u8; c.total as usize], 0));
            if entry.0.len() != c.total as usize {
                let _ = out_tx
                    .send(Err(Error::BadFrame("inconsistent chunk totals".into())))
                    .await;
                return;
            }
            entry.0[c.off as usize..c.off as usize + c.data.len()].copy_from_slice(&c.data);
            entry.1 += c.data.len() as u32;
            if entry.1 >= c.total {
                let (buf, _) = partial.remove(&c.seq).expect("present");
                ready.insert(c.seq, buf);
            }
            while let Some(buf) = ready.remove(&next) {
                next += 1;
                let res = Frame::decode_body(&buf[4..]);
                let failed = res.is_err();
                if out_tx.send(res).await.is_err() || failed {
                    return;
                }
            }
        }
    });
    let sink = FrameSink::new(
        SinkInner::Parallel(ParSink {
            writers,
            seq: 0,
            error,
        }),
        max_frame,
    );
    Channel::new(
        sink,
        FrameSource::new(out_rx, limit),
        TransportKind::ParallelTcp,
    )
}

/// Opens `n` TCP connections to `addr` and bundles them into one channel.
pub async fn connect(addr: SocketAddr, n: u8, max_frame: u32) -> Result<Channel> {
    let n = n.clamp(1, MAX_STREAMS);
    let mut session = [0u8; 8];
    getrandom::fill(&mut session).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    let mut streams = Vec::new();
    for i in 0..n {
        let mut s = TcpStream::connect(addr).await?;
        let mut pre = Vec::with_capacity(14);
        pre.extend_from_slice(MAGIC);
        pre.extend_from_slice(&session);
        pre.push(i);
        pre.push(n);
        s.write_all(&pre).await?;
        streams.push(s);
    }
    Ok(build(streams, max_frame))
}

/// Accepts parallel channels on a TCP listener.
pub struct ParallelListener {
    rx: mpsc::Receiver<(Channel, SocketAddr)>,
    local: SocketAddr,
}

impl ParallelListener {
    /// Binds `addr` and starts grouping incoming streams by session.
    pub async fn bind(addr: SocketAddr, max_frame: u32) -> Result<Self> {
        let l = TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        let (tx, rx) = mpsc::channel(16);
        type Group = (Instant, u8, Vec<Option<TcpStream>>);
        let groups: Arc<Mutex<HashMap<[u8; 8], Group>>> = Arc::default();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let tx = tx.clone();
                let groups = groups.clone();
                tokio::spawn(async move {
                    let mut pre = [0u8; 14];
                    let ok =
                        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut pre)).await;
                    if !matches!(ok, Ok(Ok(_))) || &pre[0..4] != MAGIC {
                        return;
                    }
                    let session: [u8; 8] = pre[4..12].try_into().expect("8 bytes");
                    let (idx, count) = (pre[12], pre[13]);
                    if count == 0 || count > MAX_STREAMS || idx >= count {
                        return;
                    }
                    let complete = {
                        let mut g = groups.lock().expect("poisoned");
                        g.retain(|_, (t, _, _)| t.elapsed() < Duration::from_secs(30));
                        let e = g.entry(session).or_insert_with(|| {
                            (Instant::now(), count, (0..count).map(|_| None).collect())
                        });
                        if e.1 != count || e.2[idx as usize].is_some() {
                            return;
                        }
                        e.2[idx as usize] = Some(s);
                        if e.2.iter().all(Option::is_some) {
                            g.remove(&session)
                                .map(|(_, _, v)| v.into_iter().flatten().collect::<Vec<_>>())
                        } else {
                            None
                        }
                    };
                    if let Some(streams) = complete {
                        let _ = tx.send((build(streams, max_frame), peer)).await;
                    }
                });
            }
        });
        Ok(ParallelListener { rx, local })
    }
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
    /// Next complete channel.
    pub async fn accept(&mut self) -> Result<(Channel, SocketAddr)> {
        self.rx.recv().await.ok_or(Error::Closed)
    }
}
