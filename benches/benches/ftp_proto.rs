//! gridos-ftp's I/O-free protocol core: the FTP command parser, control-connection line
//! framing, and the MODE E codec.
//!
//! - `ftp_proto/parse`: `Command::parse` over a mix of 30 lines typical of a GridFTP session
//!   (login, TYPE/MODE/OPTS RETR Parallelism, SPAS/EPSV/PORT/EPRT, REST ranges, RETR/ERET/
//!   STOR/ESTO, CKSM, MLSD, …), and three single lines. Figures per line.
//! - `ftp_proto/line_reader`: a pipelined control-connection buffer (the mix repeated to 1020
//!   CRLF-terminated lines, 17 850 bytes) fed to a `LineReader` in 1448-byte segments with every
//!   line polled after each segment; once framing only, once framing + parsing.
//! - `ftp_proto/mode_e_header`: 1024 17-byte block headers encoded, and decoded.
//! - `ftp_proto/mode_e_receiver`: a `ModeEReceiver` reassembling a 1 GiB transfer in 256 KiB
//!   blocks (4096 data blocks + 4 EOD/EOF) arriving on 4 streams in a pseudo-random
//!   interleaving, each payload reported written in 64 KiB pieces (one pipe's worth per
//!   splice). `round_robin`: the sender's own plan (blocks dealt to streams in offset order);
//!   `shuffled`: the blocks dealt in random order, so the received-range set fragments.
//!
//! `cargo bench -p gridos-benches --bench ftp_proto`; summarise with
//! `python3 benches/criterion_summary.py ftp_proto/`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridos_ftp::proto::mode_e::{BlockHeader, ModeEReceiver, ModeESender, Placement};
use gridos_ftp::proto::{Command, LineEvent, LineReader, RangeSet};
use std::hint::black_box;
use std::time::Duration;

/// A GridFTP session's worth of command lines (as a client like globus-url-copy sends them).
const MIX: &[&str] = &[
    "USER anonymous",
    "PASS guest@example.org",
    "SYST",
    "FEAT",
    "OPTS UTF8 ON",
    "PWD",
    "CWD /data/run42",
    "TYPE I",
    "MODE E",
    "DCAU N",
    "PBSZ 0",
    "PROT C",
    "SBUF 16777216",
    "OPTS RETR Parallelism=4,4,4;",
    "SIZE /data/run42/file-000.bin",
    "MDTM file-000.bin",
    "SPAS",
    "PASV",
    "EPSV",
    "PORT 127,0,0,1,4,1",
    "EPRT |1|127.0.0.1|6275|",
    "REST 0-1048576,2097152-3145728",
    "RETR /data/run42/file-000.bin",
    "ERET P 0 1048576 /data/run42/file-001.bin",
    "STOR /data/out/result.dat",
    "ESTO A 4096 /data/out/part.dat",
    "CKSM ADLER32 0 -1 /data/run42/file-000.bin",
    "MLSD /data/run42",
    "NOOP",
    "QUIT",
];

const SEGMENT: usize = 1448;
const BLOCK: u64 = 256 << 10;
const FILE: u64 = 1 << 30;
const STREAMS: usize = 4;
const WRITE_PIECE: u64 = 64 << 10;

/// xorshift64*: deterministic, dependency-free pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn parse(c: &mut Criterion) {
    let lines: Vec<&[u8]> = MIX.iter().map(|l| l.as_bytes()).collect();
    for l in &lines {
        if let Err(e) = Command::parse(l) {
            panic!("{:?} does not parse: {e}", String::from_utf8_lossy(l));
        }
    }
    let mut g = c.benchmark_group("ftp_proto/parse");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("mix_30_lines", |b| {
        b.iter(|| {
            for l in &lines {
                let _ = black_box(Command::parse(black_box(l)));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    for (name, line) in [
        ("noop", "NOOP"),
        ("retr", "RETR /data/run42/file-000.bin"),
        ("opts_retr", "OPTS RETR Parallelism=4,4,4;"),
    ] {
        g.bench_function(BenchmarkId::new("single", name), |b| {
            b.iter(|| black_box(Command::parse(black_box(line.as_bytes()))))
        });
    }
    g.finish();
}

fn line_reader(c: &mut Criterion) {
    let mut wire = Vec::new();
    let mut count = 0;
    while count < 1000 {
        for l in MIX {
            wire.extend_from_slice(l.as_bytes());
            wire.extend_from_slice(b"\r\n");
            count += 1;
        }
    }
    let mut g = c.benchmark_group("ftp_proto/line_reader");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function(BenchmarkId::new("frame", format!("{count}_lines")), |b| {
        b.iter(|| {
            let mut r = LineReader::new();
            let mut n = 0usize;
            for seg in wire.chunks(SEGMENT) {
                r.feed(black_box(seg));
                while let Some(ev) = r.poll_line() {
                    n += black_box(matches!(ev, LineEvent::Line(_))) as usize;
                }
            }
            assert_eq!(n, count);
        })
    });
    g.bench_function(
        BenchmarkId::new("frame_and_parse", format!("{count}_lines")),
        |b| {
            b.iter(|| {
                let mut r = LineReader::new();
                let mut n = 0usize;
                for seg in wire.chunks(SEGMENT) {
                    r.feed(black_box(seg));
                    while let Some(ev) = r.poll_line() {
                        if let LineEvent::Line(l) = ev {
                            n += Command::parse(&l).is_ok() as usize;
                        }
                    }
                }
                assert_eq!(n, count);
            })
        },
    );
    g.finish();
}

fn mode_e_header(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let headers: Vec<BlockHeader> = (0..1024)
        .map(|i| BlockHeader::data(rng.next() >> 20, (i % 7 + 1) * BLOCK))
        .collect();
    let wire: Vec<u8> = headers.iter().flat_map(|h| h.encode()).collect();
    let mut g = c.benchmark_group("ftp_proto/mode_e_header");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(headers.len() as u64));
    g.bench_function("encode_1024", |b| {
        let mut out = vec![0u8; wire.len()];
        b.iter(|| {
            for (h, o) in black_box(&headers)
                .iter()
                .zip(out.chunks_exact_mut(gridos_ftp::proto::mode_e::HEADER_LEN))
            {
                o.copy_from_slice(&h.encode());
            }
            black_box(&out);
        })
    });
    g.bench_function("decode_1024", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for chunk in black_box(&wire).chunks_exact(gridos_ftp::proto::mode_e::HEADER_LEN) {
                let h = BlockHeader::decode(chunk).expect("valid header");
                sum = sum.wrapping_add(h.offset ^ h.count);
            }
            black_box(sum)
        })
    });
    g.finish();
}

/// The arrival order of headers at the receiver: `(stream, header)`.
fn arrivals(shuffle: bool, seed: u64) -> Vec<(usize, BlockHeader)> {
    let ranges: RangeSet = [(0, FILE)].into_iter().collect();
    let sender = ModeESender::new(&ranges, STREAMS, BLOCK).expect("plan");
    let plan = if shuffle {
        let mut s = sender.clone();
        let mut blocks = Vec::new();
        while let Some(h) = s.next_block() {
            blocks.push(h);
        }
        let mut rng = Rng(seed ^ 0xA5A5);
        for i in (1..blocks.len()).rev() {
            blocks.swap(i, rng.below(i + 1));
        }
        let mut plan: Vec<Vec<BlockHeader>> = vec![Vec::new(); STREAMS];
        for (i, h) in blocks.into_iter().enumerate() {
            plan[i % STREAMS].push(h);
        }
        for (i, p) in plan.iter_mut().enumerate() {
            p.push(sender.final_block(i, false));
        }
        plan
    } else {
        sender.plan_round_robin(false)
    };
    // Interleave the streams as the network might: any stream with data left may go next.
    let mut rng = Rng(seed);
    let mut next = [0usize; STREAMS];
    let mut out = Vec::new();
    loop {
        let live: Vec<usize> = (0..STREAMS).filter(|&s| next[s] < plan[s].len()).collect();
        if live.is_empty() {
            return out;
        }
        let s = live[rng.below(live.len())];
        out.push((s, plan[s][next[s]]));
        next[s] += 1;
    }
}

fn receive(events: &[(usize, BlockHeader)]) -> ModeEReceiver {
    let mut rx = ModeEReceiver::new(Some(FILE));
    let ids: Vec<_> = (0..STREAMS).map(|_| rx.add_stream()).collect();
    for &(s, ref h) in events {
        match rx.handle_header(ids[s], h).expect("valid block") {
            Placement::Write { len, .. } | Placement::Discard { len } => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(WRITE_PIECE);
                    rx.handle_written(ids[s], n).expect("write report");
                    left -= n;
                }
            }
            Placement::Nothing => {}
        }
    }
    rx
}

fn mode_e_receiver(c: &mut Criterion) {
    let mut g = c.benchmark_group("ftp_proto/mode_e_receiver");
    g.sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, shuffle) in [("round_robin", false), ("shuffled", true)] {
        let events = arrivals(shuffle, 0x1234_5678_9ABC_DEF1);
        let rx = receive(&events);
        assert!(rx.is_complete(), "{name}: {:?}", rx.status());
        assert_eq!(rx.received().ranges(), &[(0, FILE)]);
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_function(
            BenchmarkId::new(format!("{STREAMS}_streams_1GiB_256KiB_blocks"), name),
            |b| b.iter(|| black_box(receive(black_box(&events)))),
        );
    }
    g.finish();
}

criterion_group!(benches, parse, line_reader, mode_e_header, mode_e_receiver);
criterion_main!(benches);
