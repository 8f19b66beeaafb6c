//! Checksum algorithms GridFTP's CKSM offers (MD5, SHA-1, SHA-256, SHA-512, ADLER32, CRC32C),
//! over 64 MiB in memory: what computing a checksum "next to the data" costs per GB.
//!
//! `cargo bench -p gridos-benches --bench checksum`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::Digest;
use std::hint::black_box;

const SIZE: usize = 64 << 20;

fn data() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(SIZE);
    while v.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

fn digest<D: Digest>(buf: &[u8]) -> Vec<u8> {
    let mut d = D::new();
    // Feed in 1 MiB pieces, as a server reading a file would.
    for c in buf.chunks(1 << 20) {
        d.update(c);
    }
    d.finalize().to_vec()
}

fn checksums(c: &mut Criterion) {
    let buf = data();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(SIZE as u64)).sample_size(10);
    g.bench_function("md5", |b| b.iter(|| digest::<md5::Md5>(black_box(&buf))));
    g.bench_function("sha1", |b| b.iter(|| digest::<sha1::Sha1>(black_box(&buf))));
    g.bench_function("sha256", |b| {
        b.iter(|| digest::<sha2::Sha256>(black_box(&buf)))
    });
    g.bench_function("sha512", |b| {
        b.iter(|| digest::<sha2::Sha512>(black_box(&buf)))
    });
    g.bench_function("adler32", |b| {
        b.iter(|| {
            let mut a = adler2::Adler32::new();
            for c in black_box(&buf).chunks(1 << 20) {
                a.write_slice(c);
            }
            a.checksum()
        })
    });
    g.bench_function("crc32c", |b| {
        b.iter(|| {
            black_box(&buf)
                .chunks(1 << 20)
                .fold(0u32, crc32c::crc32c_append)
        })
    });
    g.finish();
}

criterion_group!(benches, checksums);
criterion_main!(benches);
