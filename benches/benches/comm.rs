//! gridos-comm: message round-trip latency (64-byte payload) and one-way throughput (1 MiB
//! messages) for each transport — in-process, unix socket, TCP, parallel TCP (4 streams) —
//! measured in the same run, plus a reference peer: a bare tokio `TcpStream` speaking a plain
//! length-prefixed protocol (no GPIDs, no reader task), which shows what the gridos layer costs
//! on top of TCP.
//!
//! Every transport is reached through the public API (`Listener::bind_*`, `Connector` with an
//! explicit method); servers run on a 2-worker tokio runtime in this process and the client
//! drives the channel from the bench thread. Latency: send one frame, wait for its echo.
//! Throughput: the client sends frames while concurrently reading the server's empty
//! acknowledgement of each, so sends are pipelined as far as the channels' bounded queues
//! allow; criterion's throughput figure counts payload bytes.
//!
//! `comm/frame_codec` times `Frame::encode` and `Frame::decode_body` alone (64 B and 1 MiB
//! payloads), the per-message work every transport does before any byte moves.
//!
//! `cargo bench -p gridos-benches --bench comm`; summarise with
//! `python3 benches/criterion_summary.py comm/` (ratios against the `tcp` row).

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use gridos_comm::{
    Connector, DEFAULT_MAX_FRAME, Frame, FrameSink, FrameSource, Gpid, HostId, Listener, PeerInfo,
    Preferences, TransportKind,
};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Payload of the latency frames.
const SMALL: usize = 64;
/// Payload of the throughput frames.
const BULK: usize = 1 << 20;
/// Tag the server echoes.
const ECHO: u32 = 1;
/// Tag the server swallows, answering with an empty [`ACK`].
const SINK: u32 = 2;
/// Acknowledgement tag.
const ACK: u32 = 3;
/// Raw protocol: messages up to this size are echoed, larger ones acknowledged.
const RAW_ECHO_MAX: usize = 4096;

fn gpid(s: &str) -> Gpid {
    s.parse().expect("valid GPID")
}

fn frame(tag: u32, len: usize) -> Frame {
    Frame {
        src: gpid("bench.1.100"),
        dst: gpid("bench.1.200"),
        tag,
        payload: (0..len).map(|i| i as u8).collect(),
    }
}

/// Serves every channel accepted on `l`: echoes [`ECHO`] frames, acknowledges [`SINK`] ones.
fn serve(rt: &Runtime, mut l: Listener) {
    rt.spawn(async move {
        while let Ok((ch, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut tx, mut rx) = ch.into_split();
                let ack = frame(ACK, 0);
                while let Ok(f) = rx.recv(None, None).await {
                    let reply = if f.tag == SINK { &ack } else { &f };
                    if tx.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// The reference peer: `u32 length | payload`, echoed up to [`RAW_ECHO_MAX`] bytes, otherwise
/// answered with a bare zero length.
async fn raw_server(l: TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut r, mut w) = s.into_split();
            let mut buf = vec![0u8; BULK];
            loop {
                let mut len = [0u8; 4];
                if r.read_exact(&mut len).await.is_err() {
                    return;
                }
                let n = u32::from_be_bytes(len) as usize;
                if n > buf.len() {
                    buf.resize(n, 0);
                }
                if r.read_exact(&mut buf[..n]).await.is_err() {
                    return;
                }
                let res = if n <= RAW_ECHO_MAX {
                    let mut m = Vec::with_capacity(4 + n);
                    m.extend_from_slice(&len);
                    m.extend_from_slice(&buf[..n]);
                    w.write_all(&m).await
                } else {
                    w.write_all(&0u32.to_be_bytes()).await
                };
                if res.is_err() {
                    return;
                }
            }
        });
    }
}

fn raw_message(len: usize) -> Vec<u8> {
    let mut m = (len as u32).to_be_bytes().to_vec();
    m.extend((0..len).map(|i| i as u8));
    m
}

/// The client end of one connection.
enum Conn {
    Gridos {
        tx: FrameSink,
        rx: FrameSource,
    },
    Raw {
        r: OwnedReadHalf,
        w: OwnedWriteHalf,
        buf: Vec<u8>,
    },
}

struct Case {
    name: &'static str,
    conn: Conn,
}

struct Messages {
    small: Frame,
    bulk: Frame,
    raw_small: Vec<u8>,
    raw_bulk: Vec<u8>,
}

impl Conn {
    async fn roundtrip(&mut self, m: &Messages) {
        match self {
            Conn::Gridos { tx, rx } => {
                tx.send(&m.small).await.expect("send");
                let f = rx.recv(Some(ECHO), None).await.expect("echo");
                assert_eq!(f.payload.len(), SMALL);
            }
            Conn::Raw { r, w, buf } => {
                w.write_all(&m.raw_small).await.expect("write");
                r.read_exact(&mut buf[..4 + SMALL]).await.expect("echo");
            }
        }
    }

    /// Sends `n` bulk messages and waits for all their acknowledgements.
    async fn stream(&mut self, m: &Messages, n: u64) {
        match self {
            Conn::Gridos { tx, rx } => {
                let send = async {
                    for _ in 0..n {
                        tx.send(&m.bulk).await.expect("send");
                    }
                };
                let recv = async {
                    for _ in 0..n {
                        rx.recv(Some(ACK), None).await.expect("ack");
                    }
                };
                tokio::join!(send, recv);
            }
            Conn::Raw { r, w, buf } => {
                let send = async {
                    for _ in 0..n {
                        w.write_all(&m.raw_bulk).await.expect("write");
                    }
                };
                let recv = async {
                    for _ in 0..n {
                        r.read_exact(&mut buf[..4]).await.expect("ack");
                    }
                };
                tokio::join!(send, recv);
            }
        }
    }
}

/// Starts one server per transport (and the raw peer) and connects to each.
fn setup(rt: &Runtime, dir: &std::path::Path) -> Vec<Case> {
    let inproc = format!("bench-comm-{}", std::process::id());
    let sock = dir.join("comm.sock");
    let peer = rt.block_on(async {
        serve(
            rt,
            Listener::bind_inproc(&inproc, DEFAULT_MAX_FRAME).expect("bind inproc"),
        );
        serve(
            rt,
            Listener::bind_unix(&sock, DEFAULT_MAX_FRAME).expect("bind unix"),
        );
        let tcp = Listener::bind_tcp("127.0.0.1:0".parse().expect("addr"), DEFAULT_MAX_FRAME)
            .await
            .expect("bind tcp");
        let tcp_addr = tcp.local_addr();
        serve(rt, tcp);
        let par =
            Listener::bind_parallel_tcp("127.0.0.1:0".parse().expect("addr"), DEFAULT_MAX_FRAME)
                .await
                .expect("bind parallel tcp");
        let par_addr = par.local_addr();
        serve(rt, par);
        PeerInfo {
            name: "bench-echo".into(),
            host: Some(HostId::local()),
            inproc: Some(inproc),
            unix: Some(sock),
            tcp: tcp_addr,
            parallel_tcp: par_addr,
            path: None,
        }
    });
    let mut cases = Vec::new();
    for kind in TransportKind::ALL {
        let c = Connector::new(Preferences {
            explicit: Some(kind),
            ..Default::default()
        });
        let (ch, sel) = rt.block_on(c.connect(&peer)).expect("connect");
        assert_eq!(ch.method(), kind, "{sel}");
        let (tx, rx) = ch.into_split();
        cases.push(Case {
            name: kind.name(),
            conn: Conn::Gridos { tx, rx },
        });
    }
    let (r, w) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind raw");
        let addr = l.local_addr().expect("raw addr");
        tokio::spawn(raw_server(l));
        let s = TcpStream::connect(addr).await.expect("connect raw");
        s.set_nodelay(true).expect("nodelay");
        s.into_split()
    });
    cases.push(Case {
        name: "raw-tcp",
        conn: Conn::Raw {
            r,
            w,
            buf: vec![0u8; 4 + BULK],
        },
    });
    cases
}

fn comm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cases = setup(&rt, dir.path());
    let m = Messages {
        small: frame(ECHO, SMALL),
        bulk: frame(SINK, BULK),
        raw_small: raw_message(SMALL),
        raw_bulk: raw_message(BULK),
    };

    let mut g = c.benchmark_group("comm/latency_64B");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for case in &mut cases {
        g.bench_function(BenchmarkId::from_parameter(case.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        case.conn.roundtrip(&m).await;
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("comm/throughput_1MiB");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(BULK as u64));
    for case in &mut cases {
        g.bench_function(BenchmarkId::from_parameter(case.name), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    case.conn.stream(&m, iters).await;
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
    drop(cases);
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// The frame codec alone (no I/O): what every transport pays per message before the bytes
/// move. Bytes counted are payload bytes.
fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("comm/frame_codec");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (label, len) in [("64B", SMALL), ("1MiB", BULK)] {
        let f = frame(ECHO, len);
        let wire = f.encode().expect("encode");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| f.encode().expect("encode"))
        });
        g.bench_function(BenchmarkId::new("decode_body", label), |b| {
            b.iter(|| Frame::decode_body(&wire[4..]).expect("decode"))
        });
    }
    g.finish();
}

criterion_group!(benches, comm, codec);
criterion_main!(benches);
