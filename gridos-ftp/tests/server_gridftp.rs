//! GridFTP extensions of our server, proven two ways, bytes always checked by hash or byte
//! comparison:
//!
//! - against a real GridFTP client, `globus-url-copy` (package globus-gass-copy-progs):
//!   stream mode, `-p 4`, `-fast` with a list file, `-pp -r -cd` trees both ways, `-off/-len`
//!   partial downloads, `-verify-checksum`, `-tcp-bs`. Without the peer the tests skip with a
//!   message (fail with CI=true). globus-url-copy can hang forever on some failures, so every
//!   run has a deadline and is killed on expiry.
//! - with a raw client speaking the protocol byte by byte: FEAT, CKSM for every algorithm
//!   (computed here with the hash crates), MODE E uploads over several connections with blocks
//!   out of order, impossible blocks and early closes (426/451, target never committed),
//!   data-channel reuse (125), ERET P, REST range lists (download and upload resume), ESTO A,
//!   SPAS/SPOR, SCKS, MODE Z, TREV markers (111/112), ABOR, uploads whose client left.
//!
//! Traffic stays on 127.0.0.1.

#[path = "server_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::Digest;
use support::*;

// ---------------------------------------------------------------------------------------
// globus-url-copy
// ---------------------------------------------------------------------------------------

/// Asserts the transcript holds a line starting with `prefix`.
fn saw(t: &[String], prefix: &str, what: &str) {
    assert!(
        t.iter().any(|l| l.starts_with(prefix)),
        "{what}: globus-url-copy never sent/received {prefix:?}; transcript:\n{}",
        t.join("\n")
    );
}

fn count(t: &[String], prefix: &str) -> usize {
    t.iter().filter(|l| l.starts_with(prefix)).count()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Asserts the two files hold the same bytes (by SHA-256, with sizes in the message).
fn assert_same_file(got: &Path, want: &[u8], what: &str) {
    let g = std::fs::read(got).unwrap_or_else(|e| panic!("{what}: {} missing: {e}", got.display()));
    assert!(
        g.len() == want.len() && sha(&g) == sha(want),
        "{what}: {} differs: {} bytes (sha256 {}) vs expected {} bytes (sha256 {})",
        got.display(),
        g.len(),
        sha(&g),
        want.len(),
        sha(want)
    );
}

/// Every file (relative path → contents) and directory (relative path ending in `/`) below
/// `dir`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn assert_same_tree(got: &Path, want: &Path, what: &str) {
    let (g, w) = (tree(got), tree(want));
    let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).collect();
    let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).collect();
    let differ: Vec<_> = w
        .iter()
        .filter(|(k, v)| g.get(*k).is_some_and(|gv| gv != *v))
        .map(|(k, v)| format!("{k} ({} vs {} bytes)", g[k].len(), v.len()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{what}: trees differ ({} vs {})\nmissing: {missing:?}\nextra: {extra:?}\ndiffering: {differ:?}",
        got.display(),
        want.display()
    );
}

/// A directory of `n` files of various sizes (several empty) in nested directories.
fn make_tree(dir: &Path, n: usize, seed: u64) {
    for i in 0..n {
        let sub = match i % 4 {
            0 => "",
            1 => "a/",
            2 => "a/b/",
            _ => "c/",
        };
        let size = match i % 7 {
            0 => 0,
            1 => 1,
            2 => 4096,
            _ => (i * i * 1237 + i * 31) % 200_000,
        };
        let p = dir.join(format!("{sub}f{i:02}.bin"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, random_bytes(size, seed + i as u64)).unwrap();
    }
}

fn assert_no_partials(dir: &Path) {
    let left: Vec<_> = tree(dir)
        .into_keys()
        .filter(|k| k.contains("gridos-part"))
        .collect();
    assert!(left.is_empty(), "partial files left behind: {left:?}");
}

#[test]
fn globus_stream_mode_both_ways() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    let data = random_bytes(3 * 1024 * 1024 + 4321, 11);
    std::fs::write(s.root.join("s.bin"), &data).unwrap();
    let down = work.join("down.bin");
    let t = guc(work, &[format!("{}/s.bin", s.url()), file_url(&down)]);
    assert_same_file(&down, &data, "stream download");
    saw(&t, "> RETR /s.bin", "stream download");
    assert_eq!(count(&t, "> MODE E"), 0, "no flags: stream mode");
    let t = guc(work, &[file_url(&down), format!("{}/s-up.bin", s.url())]);
    assert_same_file(&s.root.join("s-up.bin"), &data, "stream upload");
    saw(&t, "> STOR /s-up.bin", "stream upload");
    assert_no_partials(&s.root);
}

#[test]
fn globus_four_parallel_streams_both_ways() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    let data = random_bytes(4 * 1024 * 1024 + 17, 12);
    std::fs::write(s.root.join("p.bin"), &data).unwrap();
    let down = work.join("p4.bin");
    let t = guc(
        work,
        &[
            "-p".into(),
            "4".into(),
            format!("{}/p.bin", s.url()),
            file_url(&down),
        ],
    );
    assert_same_file(&down, &data, "-p 4 download");
    saw(&t, "> MODE E", "-p 4 download");
    saw(&t, "< 200 Mode set to E", "-p 4 download");
    saw(&t, "> OPTS RETR Parallelism=4,4,4;", "-p 4 download");
    saw(&t, "< 200 OPTS", "-p 4 download");
    let t = guc(
        work,
        &[
            "-p".into(),
            "4".into(),
            file_url(&down),
            format!("{}/p4-up.bin", s.url()),
        ],
    );
    assert_same_file(&s.root.join("p4-up.bin"), &data, "-p 4 upload");
    saw(&t, "> MODE E", "-p 4 upload");
    saw(&t, "> STOR /p4-up.bin", "-p 4 upload");
    assert_no_partials(&s.root);
}

#[test]
fn globus_fast_list_file_several_files_both_ways() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    let mut list = String::new();
    let mut want = Vec::new();
    for i in 0..4u64 {
        let data = random_bytes(300_000 * i as usize + 999, 20 + i);
        std::fs::write(s.root.join(format!("r{i}.bin")), &data).unwrap();
        let dst = work.join(format!("r{i}.bin"));
        list.push_str(&format!("{}/r{i}.bin {}\n", s.url(), file_url(&dst)));
        want.push((dst, data));
    }
    for i in 0..3u64 {
        let data = random_bytes(700_000 + i as usize * 12_345, 30 + i);
        let src = work.join(format!("l{i}.bin"));
        std::fs::write(&src, &data).unwrap();
        list.push_str(&format!("{} {}/w{i}.bin\n", file_url(&src), s.url()));
        want.push((s.root.join(format!("w{i}.bin")), data));
    }
    let listfile = work.join("list.txt");
    std::fs::write(&listfile, &list).unwrap();
    let t = guc(
        work,
        &[
            "-fast".into(),
            "-p".into(),
            "2".into(),
            "-f".into(),
            listfile.display().to_string(),
        ],
    );
    for (p, data) in &want {
        assert_same_file(p, data, "-fast -f list");
    }
    saw(&t, "> MODE E", "-fast -p 2");
    // -fast keeps the data channels between files of the same direction: 125 on reuse.
    assert!(
        count(&t, "< 125") >= 3,
        "-fast: expected data-channel reuse (125) for most files; transcript:\n{}",
        t.join("\n")
    );
    assert_no_partials(&s.root);
}

#[test]
fn globus_pipelined_recursive_tree_both_ways() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    make_tree(&s.root.join("tree"), 50, 100);
    let back = work.join("back");
    guc(
        work,
        &[
            "-pp".into(),
            "-r".into(),
            "-cd".into(),
            format!("{}/tree/", s.url()),
            format!("{}/", file_url(&back)),
        ],
    );
    assert_same_tree(&back, &s.root.join("tree"), "-pp -r -cd download");

    let src = work.join("src");
    make_tree(&src, 50, 500);
    guc(
        work,
        &[
            "-pp".into(),
            "-r".into(),
            "-cd".into(),
            format!("{}/", file_url(&src)),
            format!("{}/newtree/", s.url()),
        ],
    );
    assert_same_tree(&s.root.join("newtree"), &src, "-pp -r -cd upload");

    // The same with MODE E (-fast, -p 2): pipelined transfers over reused channels.
    let src2 = work.join("src2");
    make_tree(&src2, 50, 900);
    let t = guc(
        work,
        &[
            "-pp".into(),
            "-fast".into(),
            "-p".into(),
            "2".into(),
            "-r".into(),
            "-cd".into(),
            format!("{}/", file_url(&src2)),
            format!("{}/newtree2/", s.url()),
        ],
    );
    assert_same_tree(&s.root.join("newtree2"), &src2, "-pp -fast -p 2 upload");
    assert!(
        count(&t, "< 125") >= 40,
        "-pp -fast upload of 50 files: expected the channels reused (125) for most; transcript:\n{}",
        t.join("\n")
    );
    let back2 = work.join("back2");
    let t = guc(
        work,
        &[
            "-pp".into(),
            "-fast".into(),
            "-p".into(),
            "2".into(),
            "-r".into(),
            "-cd".into(),
            format!("{}/newtree2/", s.url()),
            format!("{}/", file_url(&back2)),
        ],
    );
    assert_same_tree(&back2, &src2, "-pp -fast -p 2 download");
    assert!(
        count(&t, "< 125") >= 40,
        "-pp -fast download of 50 files: expected the channels reused (125) for most; transcript:\n{}",
        t.join("\n")
    );
    assert_no_partials(&s.root);
}

#[test]
fn globus_partial_download_off_len() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    let data = random_bytes(3 * 1024 * 1024 + 99, 13);
    std::fs::write(s.root.join("o.bin"), &data).unwrap();
    for (flags, off, len) in [
        (vec![], 1000usize, 50_000usize),
        (vec!["-p", "2"], 777_777, 2_000_001),
        (vec!["-p", "2"], 0, 1_500_000),
        (vec![], 3 * 1024 * 1024, 99),
    ] {
        let dst = work.join(format!("off-{off}-{}.bin", flags.len()));
        let mut a = args(&flags);
        a.extend([
            "-off".into(),
            off.to_string(),
            "-len".into(),
            len.to_string(),
            format!("{}/o.bin", s.url()),
            file_url(&dst),
        ]);
        let t = guc(work, &a);
        saw(&t, &format!("> ERET P {off} {len} /o.bin"), "-off/-len");
        let got = std::fs::read(&dst).unwrap();
        assert_eq!(
            got.len(),
            off + len,
            "{flags:?} -off {off} -len {len}: globus writes the range at its offset"
        );
        assert!(
            got[..off].iter().all(|&b| b == 0),
            "{flags:?} -off {off} -len {len}: bytes before the offset must be untouched (zero)"
        );
        assert!(
            got[off..] == data[off..off + len],
            "{flags:?} -off {off} -len {len}: range differs (sha256 {} vs {})",
            sha(&got[off..]),
            sha(&data[off..off + len])
        );
    }
}

#[test]
fn globus_verify_checksum_both_ways() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    let data = random_bytes(2 * 1024 * 1024 + 5, 14);
    std::fs::write(s.root.join("v.bin"), &data).unwrap();
    // globus-url-copy computes the local side's checksum with OpenSSL digests, so it can
    // only verify these algorithms (it refuses ADLER32 and CRC32C by itself).
    for alg in ["MD5", "SHA1", "SHA256", "SHA512"] {
        let down = work.join(format!("v-down-{alg}.bin"));
        let mut a = args(&["-verify-checksum", "-checksum-alg", alg, "-p", "2"]);
        a.extend([format!("{}/v.bin", s.url()), file_url(&down)]);
        let t = guc(work, &a);
        assert_same_file(
            &down,
            &data,
            &format!("-verify-checksum -checksum-alg {alg} -p 2 download"),
        );
        saw(&t, &format!("> CKSM {alg} 0 -1 /v.bin"), "-verify-checksum");
        saw(&t, "< 213 ", "-verify-checksum download");
        let name = format!("v-up-{alg}.bin");
        let mut a = args(&["-verify-checksum", "-checksum-alg", alg, "-p", "2"]);
        a.extend([file_url(&down), format!("{}/{name}", s.url())]);
        let t = guc(work, &a);
        saw(
            &t,
            &format!("> CKSM {alg} 0 -1 /{name}"),
            "-verify-checksum",
        );
        saw(&t, "< 213 ", "-verify-checksum upload");
        assert_same_file(
            &s.root.join(&name),
            &data,
            &format!("-verify-checksum -checksum-alg {alg} -p 2 upload"),
        );
    }
    // Default algorithm (MD5), stream mode.
    let down = work.join("v-stream.bin");
    let t = guc(
        work,
        &args(&[
            "-verify-checksum",
            &format!("{}/v.bin", s.url()),
            &file_url(&down),
        ]),
    );
    assert_same_file(&down, &data, "-verify-checksum stream download");
    saw(&t, "> CKSM MD5 0 -1 /v.bin", "-verify-checksum");
}

#[test]
fn globus_tcp_bs_4m_two_streams_both_ways() {
    if !need("globus-url-copy") {
        return;
    }
    let s = start(|_| {});
    let work = s.dir.path();
    let data = random_bytes(5 * 1024 * 1024 + 3, 15);
    std::fs::write(s.root.join("t.bin"), &data).unwrap();
    let down = work.join("t.bin");
    let flags = ["-tcp-bs", "4M", "-p", "2"];
    let mut a = args(&flags);
    a.extend([format!("{}/t.bin", s.url()), file_url(&down)]);
    let t = guc(work, &a);
    assert_same_file(&down, &data, "-tcp-bs 4M -p 2 download");
    saw(&t, "> SITE RETRBUFSIZE 4194304", "-tcp-bs 4M download");
    saw(&t, "< 200 SITE RETRBUFSIZE", "-tcp-bs 4M download");
    let mut a = args(&flags);
    a.extend([file_url(&down), format!("{}/t-up.bin", s.url())]);
    let t = guc(work, &a);
    assert_same_file(&s.root.join("t-up.bin"), &data, "-tcp-bs 4M -p 2 upload");
    saw(&t, "> SITE STORBUFSIZE 4194304", "-tcp-bs 4M upload");
}

// ---------------------------------------------------------------------------------------
// Raw protocol: MODE E by hand
// ---------------------------------------------------------------------------------------

const EOD: u8 = 0x08;
const EOF: u8 = 0x40;
const DATA_TIMEOUT: Duration = Duration::from_secs(20);

/// One MODE E block: descriptor, count, offset (big-endian), payload.
fn block(desc: u8, offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = header(desc, payload.len() as u64, offset).to_vec();
    b.extend_from_slice(payload);
    b
}

fn header(desc: u8, count: u64, offset: u64) -> [u8; 17] {
    let mut h = [0u8; 17];
    h[0] = desc;
    h[1..9].copy_from_slice(&count.to_be_bytes());
    h[9..17].copy_from_slice(&offset.to_be_bytes());
    h
}

/// The EOF block: no payload, offset field = number of data connections.
fn eof_block(desc: u8, streams: u64) -> Vec<u8> {
    header(EOF | desc, 0, streams).to_vec()
}

fn logged_in(s: &TestServer) -> Raw {
    let mut c = Raw::anon(s.addr);
    assert_eq!(c.cmd("TYPE I").0, 200);
    c
}

fn mode_e(c: &mut Raw) {
    let r = c.cmd("MODE E");
    assert_eq!(r.0, 200, "MODE E: {r:?}");
}

/// PASV → data address.
fn pasv(c: &mut Raw) -> SocketAddr {
    let (code, text) = c.cmd("PASV");
    assert_eq!(code, 227, "PASV: {text}");
    let inner = text
        .split('(')
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap_or_else(|| panic!("PASV reply without (h,h,h,h,p,p): {text}"));
    parse_host_port(inner)
}

fn parse_host_port(s: &str) -> SocketAddr {
    let n: Vec<u16> = s
        .trim()
        .split(',')
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad host-port {s:?}"))
        })
        .collect();
    assert_eq!(n.len(), 6, "host-port {s:?}");
    SocketAddr::from((
        [n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8],
        n[4] * 256 + n[5],
    ))
}

/// A listener for PORT/SPOR and its `h1,h2,h3,h4,p1,p2`.
fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, format!("127,0,0,1,{},{}", port >> 8, port & 0xff))
}

fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + DATA_TIMEOUT;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(DATA_TIMEOUT)).unwrap();
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the server did not connect to our PORT/SPOR listener within {DATA_TIMEOUT:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn connect(a: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(a).unwrap_or_else(|e| panic!("connect {a}: {e}"));
    s.set_read_timeout(Some(DATA_TIMEOUT)).unwrap();
    s
}

/// Reads replies until a final one (not 1yz); returns it and the 1yz replies seen before it.
fn final_reply(c: &mut Raw) -> ((u16, String), Vec<(u16, String)>) {
    let mut pre = Vec::new();
    loop {
        let r = c.reply();
        if (100..200).contains(&r.0) {
            pre.push(r);
        } else {
            return (r, pre);
        }
    }
}

/// Reads the next reply that is not a 111/112 marker.
fn reply_skipping_markers(c: &mut Raw) -> (u16, String) {
    loop {
        let r = c.reply();
        if r.0 != 111 && r.0 != 112 {
            return r;
        }
    }
}

/// What one data connection carried in one MODE E transfer.
#[derive(Debug, Default)]
struct StreamData {
    /// (offset, payload) of each data block.
    blocks: Vec<(u64, Vec<u8>)>,
    /// EOF blocks' offset fields (announced connection counts).
    eof: Vec<u64>,
    /// Whether it ended with EOD.
    eod: bool,
}

/// Reads blocks from `s` until EOD (panics on a short read, a timeout or a closed socket).
fn read_until_eod(s: &mut TcpStream, what: &str) -> StreamData {
    let mut out = StreamData::default();
    loop {
        let mut h = [0u8; 17];
        s.read_exact(&mut h)
            .unwrap_or_else(|e| panic!("{what}: reading a block header: {e}"));
        let desc = h[0];
        let count = u64::from_be_bytes(h[1..9].try_into().unwrap());
        let offset = u64::from_be_bytes(h[9..17].try_into().unwrap());
        if desc & EOF != 0 {
            assert_eq!(count, 0, "{what}: EOF block with a payload");
            out.eof.push(offset);
        } else if count > 0 {
            assert!(count <= 64 << 20, "{what}: absurd block count {count}");
            let mut p = vec![0u8; count as usize];
            s.read_exact(&mut p)
                .unwrap_or_else(|e| panic!("{what}: reading a {count}-byte payload: {e}"));
            out.blocks.push((offset, p));
        }
        if desc & EOD != 0 {
            out.eod = true;
            return out;
        }
    }
}

/// Reads every connection (one thread each) until its EOD.
fn read_streams(socks: &mut [TcpStream], what: &str) -> Vec<StreamData> {
    std::thread::scope(|sc| {
        let hs: Vec<_> = socks
            .iter_mut()
            .enumerate()
            .map(|(i, s)| sc.spawn(move || read_until_eod(s, &format!("{what}, stream {i}"))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Reassembles the blocks of all streams into `len` bytes, checking they cover every byte
/// exactly once and that exactly one EOF announced `streams.len()` connections.
fn assemble(streams: &[StreamData], len: usize, what: &str) -> Vec<u8> {
    let eofs: Vec<u64> = streams.iter().flat_map(|s| s.eof.clone()).collect();
    assert_eq!(
        eofs,
        vec![streams.len() as u64],
        "{what}: expected one EOF block announcing {} connections",
        streams.len()
    );
    let mut out = vec![0u8; len];
    let mut seen = vec![false; len];
    for (i, s) in streams.iter().enumerate() {
        assert!(s.eod, "{what}: stream {i} did not end with EOD");
        for (off, p) in &s.blocks {
            let off = *off as usize;
            assert!(
                off + p.len() <= len,
                "{what}: block {off}+{} past the end ({len})",
                p.len()
            );
            for (k, b) in p.iter().enumerate() {
                assert!(!seen[off + k], "{what}: byte {} sent twice", off + k);
                seen[off + k] = true;
                out[off + k] = *b;
            }
        }
    }
    if let Some(hole) = seen.iter().position(|s| !s) {
        panic!("{what}: byte {hole} never sent");
    }
    out
}

fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(
        got == want,
        "{what}: {} bytes (sha256 {}) vs expected {} bytes (sha256 {})",
        got.len(),
        sha(got),
        want.len(),
        sha(want)
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Our own checksum of `data`, in the CKSM reply format (lower-case hex; the 32-bit sums as
/// 8 hex digits), computed with the hash crates directly.
fn checksum(alg: &str, data: &[u8]) -> String {
    match alg {
        "MD5" => hex(&md5::Md5::digest(data)),
        "SHA1" => hex(&sha1::Sha1::digest(data)),
        "SHA256" => hex(&sha2::Sha256::digest(data)),
        "SHA512" => hex(&sha2::Sha512::digest(data)),
        "ADLER32" => format!("{:08x}", adler2::adler32_slice(data)),
        "CRC32C" => format!("{:08x}", crc32c::crc32c(data)),
        _ => unreachable!("{alg}"),
    }
}

const ALGS: [&str; 6] = ["MD5", "ADLER32", "SHA1", "SHA256", "SHA512", "CRC32C"];

#[test]
fn feat_lists_the_gridftp_extensions() {
    let s = start(|_| {});
    let mut c = logged_in(&s);
    let (code, text) = c.cmd("FEAT");
    assert_eq!(code, 211, "{text}");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for f in [
        "PARALLEL",
        "MODE E",
        "MODE Z",
        "ERET",
        "ESTO",
        "SBUF",
        "SPAS",
        "SPOR",
        "TREV",
        "SCKS",
        "REST STREAM",
    ] {
        assert!(lines.contains(&f), "FEAT lacks {f:?}:\n{text}");
    }
    let cksm = lines
        .iter()
        .find(|l| l.starts_with("CKSM "))
        .unwrap_or_else(|| panic!("FEAT lacks CKSM:\n{text}"));
    let algs: Vec<&str> = cksm["CKSM ".len()..].split(',').collect();
    for a in ALGS {
        assert!(algs.contains(&a), "CKSM line lacks {a}: {cksm}");
    }
}

#[test]
fn cksm_matches_independent_checksums_and_refuses_ranges_past_eof() {
    let s = start(|_| {});
    let data = random_bytes(1024 * 1024 + 4567, 40);
    std::fs::write(s.root.join("c.bin"), &data).unwrap();
    std::fs::write(s.root.join("empty"), b"").unwrap();
    std::fs::create_dir(s.root.join("dir")).unwrap();
    std::fs::create_dir(s.root.join("sub dir")).unwrap();
    std::fs::write(s.root.join("sub dir/a file.bin"), &data[..5000]).unwrap();
    let mut c = logged_in(&s);
    let n = data.len();
    // Paths with spaces: everything after the third argument is the path.
    let (code, text) = c.cmd("CKSM SHA1 7 1000 sub dir/a file.bin");
    assert_eq!(code, 213, "{text}");
    assert_eq!(
        text[4..].trim(),
        checksum("SHA1", &data[7..1007]),
        "path with spaces"
    );
    for alg in ALGS {
        for (off, len, slice) in [
            (0usize, None, &data[..]),
            (10, Some(100usize), &data[10..110]),
            (0, Some(n), &data[..]),
            (n - 1, Some(1), &data[n - 1..]),
            (n, None, &data[n..]),
            (5, Some(0), &data[5..5]),
            (123_457, None, &data[123_457..]),
        ] {
            let len_arg = len.map_or("-1".to_string(), |l| l.to_string());
            let cmd = format!("CKSM {alg} {off} {len_arg} c.bin");
            let (code, text) = c.cmd(&cmd);
            assert_eq!(code, 213, "{cmd}: {text}");
            let got = text[4..].trim();
            assert_eq!(got, checksum(alg, slice), "{cmd}: wrong checksum");
        }
        let (code, text) = c.cmd(&format!("CKSM {alg} 0 -1 empty"));
        assert_eq!(code, 213, "{text}");
        assert_eq!(
            text[4..].trim(),
            checksum(alg, b""),
            "{alg} of an empty file"
        );
        // Lower-case algorithm names are accepted.
        let (code, text) = c.cmd(&format!("CKSM {} 10 100 c.bin", alg.to_lowercase()));
        assert_eq!(code, 213, "{text}");
        assert_eq!(text[4..].trim(), checksum(alg, &data[10..110]));
    }
    // Ranges past the end: an error, never a checksum of fewer bytes.
    for cmd in [
        format!("CKSM MD5 {} 1 c.bin", n),
        format!("CKSM MD5 {} 100 c.bin", n - 50),
        format!("CKSM MD5 {} -1 c.bin", n + 1),
        format!("CKSM SHA256 0 {} c.bin", n + 1),
        "CKSM MD5 10 100 empty".to_string(),
        "CKSM MD5 0 -1 missing".to_string(),
        "CKSM MD5 0 -1 dir".to_string(),
    ] {
        let (code, text) = c.cmd(&cmd);
        assert!(
            (500..600).contains(&code),
            "{cmd}: expected a 5xx error, got {code} {text}"
        );
    }
    assert_eq!(c.cmd("NOOP").0, 200, "still serving after CKSM errors");
}

/// Data of `len` bytes cut into blocks of `size`: (offset, range).
fn blocks_of(len: usize, size: usize) -> Vec<(u64, std::ops::Range<usize>)> {
    (0..len.div_ceil(size))
        .map(|i| (i as u64 * size as u64, i * size..((i + 1) * size).min(len)))
        .collect()
}

#[test]
fn mode_e_upload_three_streams_out_of_order_then_reused() {
    let s = start(|_| {});
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let data = random_bytes(3 * 1024 * 1024 + 12_345, 41);
    let a = pasv(&mut c);
    let mut socks: Vec<TcpStream> = (0..3).map(|_| connect(a)).collect();
    let r = c.cmd("STOR ooo.bin");
    assert_eq!(r.0, 150, "STOR in MODE E: {r:?}");
    // 13 blocks of 256 KiB, sent last to first, spread over the connections so that each
    // connection's blocks go backwards too.
    let bl = blocks_of(data.len(), 256 * 1024);
    for (k, (off, range)) in bl.iter().enumerate().rev() {
        let conn = (k * 2 + 1) % 3;
        socks[conn]
            .write_all(&block(0, *off, &data[range.clone()]))
            .unwrap();
    }
    socks[0].write_all(&header(EOD, 0, 0)).unwrap();
    socks[2].write_all(&header(EOD, 0, 0)).unwrap();
    socks[1].write_all(&eof_block(EOD, 3)).unwrap();
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(
        fin.0, 226,
        "out-of-order MODE E upload: {fin:?} (after {pre:?})"
    );
    assert_same_file(&s.root.join("ooo.bin"), &data, "out-of-order MODE E upload");

    // The same three connections carry the next upload: 125, no new connection needed.
    let data2 = random_bytes(1024 * 1024 + 1, 42);
    let r = c.cmd("STOR second.bin");
    assert_eq!(
        r.0, 125,
        "second MODE E STOR must reuse the open channels: {r:?}"
    );
    // Two blocks on connection 2 (second half first), none on 0, EOF on 1.
    let half = data2.len() / 2;
    socks[2]
        .write_all(&block(0, half as u64, &data2[half..]))
        .unwrap();
    socks[2].write_all(&block(EOD, 0, &data2[..half])).unwrap();
    socks[0].write_all(&header(EOD, 0, 0)).unwrap();
    socks[1].write_all(&eof_block(EOD, 3)).unwrap();
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(
        fin.0, 226,
        "reused-channel MODE E upload: {fin:?} (after {pre:?})"
    );
    assert_same_file(&s.root.join("second.bin"), &data2, "reused-channel upload");
    assert_no_partials(&s.root);
}

/// One bad MODE E upload: `send` writes on the data connections; the transfer must fail
/// with 426 or 451, the target must not appear (or keep its old contents), and the session
/// must go on: NOOP, then a correct upload on a fresh PASV.
fn bad_upload(
    s: &TestServer,
    c: &mut Raw,
    name: &str,
    conns: usize,
    send: impl FnOnce(&mut [TcpStream]),
) {
    let a = pasv(c);
    let mut socks: Vec<TcpStream> = (0..conns).map(|_| connect(a)).collect();
    let r = c.cmd(&format!("STOR {name}"));
    assert!(
        r.0 == 150 || r.0 == 125,
        "{name}: STOR preliminary reply: {r:?}"
    );
    send(&mut socks);
    let (fin, pre) = final_reply(c);
    assert!(
        fin.0 == 426 || fin.0 == 451,
        "{name}: expected 426 or 451, got {fin:?} (after {pre:?})"
    );
    drop(socks);
    assert!(
        !s.root.join(name).exists(),
        "{name}: the target was committed after a failed upload"
    );
    let r = c.cmd("NOOP");
    assert_eq!(
        r.0, 200,
        "{name}: the session must go on after the failure: {r:?}"
    );
    // A correct upload on the same control connection.
    let ok = random_bytes(70_000, 7);
    let a = pasv(c);
    let mut d = connect(a);
    let r = c.cmd(&format!("STOR after-{name}"));
    assert!(r.0 == 150 || r.0 == 125, "after {name}: {r:?}");
    d.write_all(&block(0, 0, &ok)).unwrap();
    d.write_all(&eof_block(EOD, 1)).unwrap();
    let (fin, pre) = final_reply(c);
    assert_eq!(fin.0, 226, "upload after {name}: {fin:?} (after {pre:?})");
    assert_same_file(
        &s.root.join(format!("after-{name}")),
        &ok,
        "upload after a failure",
    );
}

#[test]
fn mode_e_upload_impossible_blocks_are_refused() {
    let s = start(|_| {});
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let good = random_bytes(100_000, 43);
    // Let writes to a connection the server already gave up on fail quietly.
    let w = |s: &mut TcpStream, b: &[u8]| {
        let _ = s.write_all(b);
    };

    bad_upload(&s, &mut c, "overflow.bin", 1, |d| {
        w(&mut d[0], &block(0, 0, &good[..1000]));
        w(&mut d[0], &header(0, u64::MAX, 10));
        w(&mut d[0], &good);
        w(&mut d[0], &eof_block(EOD, 1));
    });
    bad_upload(&s, &mut c, "count-max.bin", 1, |d| {
        w(&mut d[0], &header(0, u64::MAX, u64::MAX));
        w(&mut d[0], &good);
    });
    bad_upload(&s, &mut c, "eof-zero.bin", 1, |d| {
        w(&mut d[0], &block(0, 0, &good));
        w(&mut d[0], &eof_block(EOD, 0));
    });
    bad_upload(&s, &mut c, "eof-huge.bin", 1, |d| {
        w(&mut d[0], &block(0, 0, &good));
        w(&mut d[0], &eof_block(EOD, 100_000));
    });
    bad_upload(&s, &mut c, "eof-with-data.bin", 1, |d| {
        w(&mut d[0], &block(EOF | EOD, 1, &good[..10]));
    });
    bad_upload(&s, &mut c, "eof-disagree.bin", 2, |d| {
        w(&mut d[0], &block(0, 0, &good[..500]));
        w(&mut d[0], &eof_block(0, 2));
        w(&mut d[1], &block(0, 500, &good[500..]));
        w(&mut d[1], &eof_block(EOD, 3));
        w(&mut d[0], &header(EOD, 0, 0));
    });
    // Past the largest file offset (2^63: no u64 overflow, but beyond off_t).
    bad_upload(&s, &mut c, "huge-offset.bin", 1, |d| {
        w(&mut d[0], &block(0, 1 << 63, &good[..10]));
        w(&mut d[0], &eof_block(EOD, 1));
    });
    // Garbage instead of a header: an unknown descriptor with an absurd count.
    bad_upload(&s, &mut c, "garbage.bin", 1, |d| {
        w(&mut d[0], &random_bytes(4096, 44));
        // If the garbage happened to parse as a block, the early close fails it.
        let _ = d[0].shutdown(std::net::Shutdown::Write);
    });
    // Only the good uploads and (allowed) partials of the refused ones, with the range
    // records of those that had holes, are left.
    for name in tree(&s.root).into_keys() {
        assert!(
            name.starts_with("after-")
                || name.ends_with(".gridos-part")
                || name.ends_with(".gridos-part.ranges"),
            "unexpected file {name:?} in the docroot after refused uploads"
        );
    }
}

#[test]
fn mode_e_data_block_after_eod_is_not_taken_as_data() {
    // After EOD a connection carries nothing more for this transfer. Here the only
    // connection ends with EOD (no EOF anywhere), then sends more blocks and the EOF: the
    // transfer cannot complete, must fail (426/451 once the data timeout passes) and must
    // not commit the file.
    let s = start(|cfg| cfg.data_timeout = Duration::from_secs(2));
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let good = random_bytes(50_000, 45);
    let t = Instant::now();
    bad_upload(&s, &mut c, "after-eod.bin", 1, |d| {
        let _ = d[0].write_all(&block(EOD, 0, &good[..1000]));
        let _ = d[0].write_all(&block(0, 1000, &good[1000..]));
        let _ = d[0].write_all(&eof_block(EOD, 1));
    });
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the failure took {:?}",
        t.elapsed()
    );
}

#[test]
fn mode_e_connection_closed_before_eod_is_426_and_not_committed() {
    let s = start(|_| {});
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let old = b"the old contents must survive".to_vec();
    std::fs::write(s.root.join("keep.bin"), &old).unwrap();
    let data = random_bytes(600_000, 46);

    // Connection 1 sends a whole block, then closes without EOD.
    let a = pasv(&mut c);
    let mut d: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
    let r = c.cmd("STOR keep.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d[0].write_all(&block(0, 0, &data[..300_000])).unwrap();
    d[0].write_all(&eof_block(EOD, 2)).unwrap();
    d[1].write_all(&block(0, 300_000, &data[300_000..]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(d);
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 426, "close without EOD: {fin:?} (after {pre:?})");
    assert_eq!(
        std::fs::read(s.root.join("keep.bin")).unwrap(),
        old,
        "an upload cut before EOD replaced the existing file"
    );
    assert_eq!(c.cmd("NOOP").0, 200);

    // The only connection closes in the middle of a block's payload.
    let a = pasv(&mut c);
    let mut d = connect(a);
    let r = c.cmd("STOR cut.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d.write_all(&header(0, data.len() as u64, 0)).unwrap();
    d.write_all(&data[..100_000]).unwrap();
    drop(d);
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 426, "close inside a block: {fin:?} (after {pre:?})");
    assert!(!s.root.join("cut.bin").exists(), "cut.bin committed");

    // A connection closed in the middle of a header.
    let a = pasv(&mut c);
    let mut d = connect(a);
    let r = c.cmd("STOR cut2.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d.write_all(&block(0, 0, &data[..1000])).unwrap();
    d.write_all(&header(EOD, 0, 1)[..9]).unwrap();
    drop(d);
    let (fin, pre) = final_reply(&mut c);
    assert!(
        fin.0 == 426 || fin.0 == 451,
        "close inside a header: {fin:?} (after {pre:?})"
    );
    assert!(!s.root.join("cut2.bin").exists(), "cut2.bin committed");
    assert_eq!(c.cmd("NOOP").0, 200);
    assert_eq!(
        std::fs::read(s.root.join("keep.bin")).unwrap(),
        old,
        "existing file changed"
    );
}

#[test]
fn mode_e_retr_parallel_over_port_and_channel_reuse() {
    let s = start(|_| {});
    let one = random_bytes(3 * 1024 * 1024 + 5, 47);
    let two = random_bytes(1536 * 1024 + 77, 48);
    std::fs::write(s.root.join("one.bin"), &one).unwrap();
    std::fs::write(s.root.join("two.bin"), &two).unwrap();
    std::fs::write(s.root.join("three.bin"), b"").unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);
    assert_eq!(c.cmd("OPTS RETR Parallelism=3,3,3;").0, 200);
    let (l, hp) = listen();
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"RETR one.bin\r\n");
    // In MODE E the sender connects: three connections from the server.
    let mut socks: Vec<TcpStream> = (0..3).map(|_| accept(&l)).collect();
    let r = c.reply();
    assert_eq!(r.0, 150, "first RETR: {r:?}");
    let streams = read_streams(&mut socks, "RETR one.bin");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "first RETR: {fin:?}");
    assert_bytes(
        &assemble(&streams, one.len(), "RETR one.bin"),
        &one,
        "RETR one.bin",
    );

    // A failing RETR in between (missing file) leaves the channels open and cached.
    let r = c.cmd("RETR missing.bin");
    assert_eq!(r.0, 550, "RETR of a missing file: {r:?}");
    for (name, want) in [("two.bin", &two[..]), ("three.bin", &b""[..])] {
        let r = c.cmd(&format!("RETR {name}"));
        assert_eq!(
            r.0, 125,
            "RETR {name} must reuse the open data channels: {r:?}"
        );
        let streams = read_streams(&mut socks, &format!("RETR {name}"));
        let (fin, _) = final_reply(&mut c);
        assert_eq!(fin.0, 226, "RETR {name}: {fin:?}");
        assert_bytes(&assemble(&streams, want.len(), name), want, name);
    }
    // No new connection was made for the reused transfers.
    l.set_nonblocking(true).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    match l.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the server opened a new data connection from {from} despite 125"),
        Err(e) => panic!("accept: {e}"),
    }
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn eret_partial_retrieve_offsets_are_relative() {
    let s = start(|_| {});
    let data = random_bytes(4 * 1024 * 1024 + 3, 49);
    std::fs::write(s.root.join("e.bin"), &data).unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);
    assert_eq!(c.cmd("SBUF 1048576").0, 200);
    for (off, len) in [
        (123_457usize, 2_500_000usize),
        (0, 10),
        (data.len() - 1000, 1000),
        (5, 0),
    ] {
        let a = pasv(&mut c);
        let mut d = vec![connect(a)];
        let r = c.cmd(&format!("ERET P {off} {len} e.bin"));
        assert!(r.0 == 150 || r.0 == 125, "ERET P {off} {len}: {r:?}");
        let streams = read_streams(&mut d, "ERET");
        let (fin, _) = final_reply(&mut c);
        assert_eq!(fin.0, 226, "ERET P {off} {len}: {fin:?}");
        if len > 0 {
            let first = streams[0].blocks.iter().map(|b| b.0).min();
            assert_eq!(
                first,
                Some(0),
                "ERET P {off} {len}: block offsets must start at 0 (relative to the ERET offset)"
            );
        }
        let got = assemble(&streams, len, &format!("ERET P {off} {len}"));
        assert_bytes(&got, &data[off..off + len], &format!("ERET P {off} {len}"));
    }
    // An ERET that starts past the end of the file is an error.
    let a = pasv(&mut c);
    let _d = connect(a);
    let (fin, _) = final_reply_of(&mut c, &format!("ERET P {} 10 e.bin", data.len() + 1));
    assert!(
        (400..600).contains(&fin.0),
        "ERET past the end: expected an error, got {fin:?}"
    );
    assert_eq!(c.cmd("NOOP").0, 200);
}

/// Sends `cmd` and reads to its final reply.
fn final_reply_of(c: &mut Raw, cmd: &str) -> ((u16, String), Vec<(u16, String)>) {
    c.send(format!("{cmd}\r\n").as_bytes());
    final_reply(c)
}

#[test]
fn rest_range_list_retr_sends_only_the_missing_ranges() {
    let s = start(|_| {});
    let data = random_bytes(2 * 1024 * 1024 + 11, 50);
    std::fs::write(s.root.join("r.bin"), &data).unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let a = pasv(&mut c);
    let mut d = vec![connect(a)];
    assert_eq!(c.cmd("REST 0-1000,5000-600000").0, 350);
    let r = c.cmd("RETR r.bin");
    assert!(r.0 == 150 || r.0 == 125, "{r:?}");
    let streams = read_streams(&mut d, "RETR after REST ranges");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    let mut got: Vec<(u64, u64)> = streams[0]
        .blocks
        .iter()
        .map(|(o, p)| (*o, *o + p.len() as u64))
        .collect();
    got.sort();
    for (o, p) in &streams[0].blocks {
        assert_bytes(
            p,
            &data[*o as usize..*o as usize + p.len()],
            &format!("block at {o}"),
        );
    }
    // Merge adjacent blocks and compare with the complement of what we said we have.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in got {
        match merged.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    assert_eq!(
        merged,
        vec![(1000, 5000), (600_000, data.len() as u64)],
        "the server must send exactly the ranges the client lacks"
    );
}

#[test]
fn esto_adjusted_store_writes_at_offset() {
    let s = start(|_| {});
    let old = vec![b'a'; 300_000];
    std::fs::write(s.root.join("es.bin"), &old).unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let patch = random_bytes(100_000, 51);
    let a = pasv(&mut c);
    let mut d = connect(a);
    let r = c.cmd("ESTO A 150000 es.bin");
    assert!(r.0 == 150 || r.0 == 125, "{r:?}");
    // Block offsets are relative to the ESTO offset; second half first.
    d.write_all(&block(0, 50_000, &patch[50_000..])).unwrap();
    d.write_all(&block(0, 0, &patch[..50_000])).unwrap();
    d.write_all(&eof_block(EOD, 1)).unwrap();
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "ESTO: {fin:?} after {pre:?}");
    let mut want = old.clone();
    want[150_000..250_000].copy_from_slice(&patch);
    assert_same_file(&s.root.join("es.bin"), &want, "ESTO A 150000");
}

#[test]
fn spas_upload_and_spor_download() {
    let s = start(|_| {});
    let data = random_bytes(2 * 1024 * 1024 + 999, 52);
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let (code, text) = c.cmd("SPAS");
    assert_eq!(code, 229, "SPAS: {text}");
    let addrs: Vec<SocketAddr> = text
        .lines()
        .skip(1)
        .filter(|l| l.starts_with(' '))
        .map(parse_host_port)
        .collect();
    assert!(!addrs.is_empty(), "SPAS gave no address: {text}");
    let mut d: Vec<TcpStream> = (0..2).map(|i| connect(addrs[i % addrs.len()])).collect();
    let r = c.cmd("STOR sp.bin");
    assert_eq!(r.0, 150, "{r:?}");
    let half = data.len() / 2;
    d[1].write_all(&block(EOD, half as u64, &data[half..]))
        .unwrap();
    d[0].write_all(&block(0, 0, &data[..half])).unwrap();
    d[0].write_all(&eof_block(EOD, 2)).unwrap();
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "SPAS upload: {fin:?} after {pre:?}");
    assert_same_file(&s.root.join("sp.bin"), &data, "SPAS upload");

    // SPOR with two addresses: one connection to each.
    let (l1, hp1) = listen();
    let (l2, hp2) = listen();
    assert_eq!(c.cmd(&format!("SPOR {hp1} {hp2}")).0, 200);
    assert_eq!(c.cmd("OPTS RETR Parallelism=2,2,2;").0, 200);
    c.send(b"RETR sp.bin\r\n");
    let mut socks = vec![accept(&l1), accept(&l2)];
    let r = c.reply();
    assert_eq!(r.0, 150, "{r:?}");
    let streams = read_streams(&mut socks, "SPOR RETR");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_bytes(
        &assemble(&streams, data.len(), "SPOR"),
        &data,
        "SPOR download",
    );
}

#[test]
fn scks_wrong_checksum_fails_the_upload_right_one_commits() {
    let s = start(|_| {});
    let data = random_bytes(1024 * 1024 + 3, 53);
    let md5 = checksum("MD5", &data);
    let mut c = logged_in(&s);

    // Stream mode.
    let wrong = checksum("MD5", b"something else");
    assert_eq!(c.cmd(&format!("SCKS MD5 {wrong}")).0, 200);
    let e = c.store("STOR", "sk.bin", &data);
    assert!(
        matches!(e, Err(code) if (400..600).contains(&code)),
        "STOR after a wrong SCKS must fail: {e:?}"
    );
    assert!(
        !s.root.join("sk.bin").exists(),
        "committed despite a wrong SCKS"
    );
    assert_eq!(c.cmd("NOOP").0, 200);
    assert_eq!(
        c.cmd(&format!("SCKS {md5}")).0,
        200,
        "SCKS without algorithm"
    );
    c.store("STOR", "sk.bin", &data)
        .unwrap_or_else(|code| panic!("STOR with the right SCKS failed: {code}"));
    assert_same_file(&s.root.join("sk.bin"), &data, "SCKS MD5 right");
    // SCKS applies to one upload only.
    c.store("STOR", "plain.bin", b"no checksum")
        .unwrap_or_else(|code| panic!("plain STOR after SCKS failed: {code}"));

    // MODE E, SHA256 and CRC32C.
    mode_e(&mut c);
    for alg in ["SHA256", "CRC32C"] {
        for right in [false, true] {
            let name = format!("ske-{alg}-{right}.bin");
            let value = if right {
                checksum(alg, &data)
            } else {
                checksum(alg, &data[1..])
            };
            assert_eq!(c.cmd(&format!("SCKS {alg} {value}")).0, 200);
            let a = pasv(&mut c);
            let mut d: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
            let r = c.cmd(&format!("STOR {name}"));
            assert_eq!(r.0, 150, "{r:?}");
            let half = data.len() / 2;
            d[1].write_all(&block(EOD, half as u64, &data[half..]))
                .unwrap();
            d[0].write_all(&block(0, 0, &data[..half])).unwrap();
            d[0].write_all(&eof_block(EOD, 2)).unwrap();
            let (fin, pre) = final_reply(&mut c);
            if right {
                assert_eq!(fin.0, 226, "{name}: {fin:?} after {pre:?}");
                assert_same_file(&s.root.join(&name), &data, &name);
            } else {
                assert!(
                    (400..600).contains(&fin.0),
                    "{name}: a wrong SCKS must fail the upload, got {fin:?}"
                );
                assert!(!s.root.join(&name).exists(), "{name} committed");
            }
        }
    }
    assert_eq!(c.cmd("SCKS NOSUCH abc").0, 504);
}

#[test]
fn mode_z_download_and_upload() {
    let s = start(|_| {});
    // Compressible: text lines with some noise.
    let mut data = Vec::new();
    for i in 0..60_000u32 {
        data.extend_from_slice(
            format!("line {i} value {}\n", i.wrapping_mul(2_654_435_761) % 977).as_bytes(),
        );
    }
    std::fs::write(s.root.join("z.txt"), &data).unwrap();
    let mut c = logged_in(&s);
    assert_eq!(c.cmd("MODE Z").0, 200);
    let wire = c
        .retr("z.txt")
        .unwrap_or_else(|code| panic!("MODE Z RETR failed: {code}"));
    assert!(
        wire.len() < data.len() / 2,
        "MODE Z: {} bytes on the wire for {} of text: not compressed",
        wire.len(),
        data.len()
    );
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&wire[..])
        .read_to_end(&mut plain)
        .unwrap_or_else(|e| panic!("MODE Z RETR is not a zlib stream: {e}"));
    assert_bytes(&plain, &data, "MODE Z download, decompressed");

    // Upload: a zlib stream in, the plain bytes stored.
    let up = random_bytes(800_000, 54);
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&up).unwrap();
    let z = enc.finish().unwrap();
    c.store("STOR", "zu.bin", &z)
        .unwrap_or_else(|code| panic!("MODE Z STOR failed: {code}"));
    assert_same_file(&s.root.join("zu.bin"), &up, "MODE Z upload");

    // Not a zlib stream: refused, not committed.
    let e = c.store("STOR", "zbad.bin", &random_bytes(50_000, 55));
    assert!(
        matches!(e, Err(code) if code == 426 || code == 451),
        "MODE Z upload of garbage must fail with 426/451: {e:?}"
    );
    assert!(
        !s.root.join("zbad.bin").exists(),
        "garbage MODE Z upload committed"
    );
    // A truncated zlib stream: refused too.
    let e = c.store("STOR", "ztrunc.bin", &z[..z.len() / 2]);
    assert!(
        matches!(e, Err(code) if code == 426 || code == 451),
        "truncated MODE Z upload must fail with 426/451: {e:?}"
    );
    assert!(
        !s.root.join("ztrunc.bin").exists(),
        "truncated MODE Z upload committed"
    );
    // An empty file: still a complete zlib stream.
    std::fs::write(s.root.join("empty"), b"").unwrap();
    let wire = c
        .retr("empty")
        .unwrap_or_else(|code| panic!("MODE Z RETR of an empty file failed: {code}"));
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&wire[..])
        .read_to_end(&mut plain)
        .unwrap_or_else(|e| {
            panic!("MODE Z RETR of an empty file is not a zlib stream ({wire:?}): {e}")
        });
    assert!(plain.is_empty());
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"").unwrap();
    c.store("STOR", "zempty", &enc.finish().unwrap())
        .unwrap_or_else(|code| panic!("MODE Z STOR of an empty stream failed: {code}"));
    assert_eq!(std::fs::read(s.root.join("zempty")).unwrap(), b"");
    // Listings are compressed too.
    let wire =
        data_bytes(&mut c, "NLST").unwrap_or_else(|code| panic!("MODE Z NLST failed: {code}"));
    let mut names = String::new();
    flate2::read::ZlibDecoder::new(&wire[..])
        .read_to_string(&mut names)
        .unwrap_or_else(|e| panic!("MODE Z NLST is not a zlib stream: {e}"));
    for n in ["z.txt", "zu.bin", "empty"] {
        assert!(
            names.lines().any(|l| l.trim() == n),
            "NLST lacks {n}: {names}"
        );
    }
    assert_eq!(c.cmd("NOOP").0, 200);
}

/// A stream-mode command with incoming data over EPSV: the raw bytes, or the failing code.
fn data_bytes(c: &mut Raw, cmd: &str) -> Result<Vec<u8>, u16> {
    let a = c.epsv();
    let mut d = connect(a);
    let (code, _) = c.cmd(cmd);
    if code >= 400 {
        return Err(code);
    }
    let mut buf = Vec::new();
    d.read_to_end(&mut buf).unwrap();
    match c.reply().0 {
        226 => Ok(buf),
        code => Err(code),
    }
}

/// The value after `key:` in a 112 perf marker.
fn perf_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
}

#[test]
fn trev_perf_markers_during_a_slow_download() {
    let s = start(|_| {});
    let data = random_bytes(12 * 1024 * 1024, 56);
    std::fs::write(s.root.join("slow.bin"), &data).unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);
    assert_eq!(c.cmd("TREV PERF 1").0, 200);
    // A small receive buffer on our side (inherited by the accepted connection), so the
    // transfer cannot finish while we do not read.
    let (l, hp) = listen();
    nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::RcvBuf, &65536).unwrap();
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"RETR slow.bin\r\n");
    let mut d = vec![accept(&l)];
    let r = c.reply();
    assert_eq!(r.0, 150, "{r:?}");
    // Read nothing until a perf marker arrives (at most 10 s).
    let t = Instant::now();
    let marker = c.reply();
    assert_eq!(
        marker.0,
        112,
        "expected a 112 perf marker while the transfer stalls, got {marker:?} after {:?}",
        t.elapsed()
    );
    assert!(marker.1.starts_with("112-Perf Marker"), "{marker:?}");
    let moved = perf_field(&marker.1, "Stripe Bytes Transferred")
        .unwrap_or_else(|| panic!("no Stripe Bytes Transferred in {marker:?}"));
    assert!(moved < data.len() as u64, "{marker:?}");
    assert!(
        perf_field(&marker.1, "Total Stripe Count").is_some(),
        "{marker:?}"
    );
    assert!(marker.1.contains("Timestamp:"), "{marker:?}");
    // Now read everything.
    let streams = read_streams(&mut d, "slow RETR");
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert!(
        pre.iter().all(|r| r.0 == 112),
        "only perf markers between 150 and 226: {pre:?}"
    );
    assert_bytes(
        &assemble(&streams, data.len(), "slow RETR"),
        &data,
        "slow RETR",
    );
}

#[test]
fn trev_restart_and_perf_markers_during_a_slow_upload() {
    let s = start(|_| {});
    let data = random_bytes(1024 * 1024, 57);
    let mut c = logged_in(&s);
    mode_e(&mut c);
    assert_eq!(c.cmd("TREV RESTART 1").0, 200);
    assert_eq!(c.cmd("TREV PERF 1").0, 200);
    let a = pasv(&mut c);
    let mut d = connect(a);
    let r = c.cmd("STOR slowup.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d.write_all(&block(0, 0, &data[..100_000])).unwrap();
    d.write_all(&block(0, 600_000, &data[600_000..700_000]))
        .unwrap();
    // Wait (at most 10 s) until the markers show both blocks, then finish the upload.
    let want_range = "111 Range Marker 0-100000,600000-700000";
    let t = Instant::now();
    let (mut range, mut perf) = (String::new(), String::new());
    while (range.trim_end() != want_range
        || perf_field(&perf, "Stripe Bytes Transferred") != Some(200_000))
        && t.elapsed() < Duration::from_secs(10)
    {
        let r = c.reply();
        match r.0 {
            111 => range = r.1,
            112 => perf = r.1,
            _ => panic!("unexpected reply during the upload: {r:?}"),
        }
    }
    assert_eq!(
        range.trim_end(),
        want_range,
        "111 range marker must list what arrived (within 10 s)"
    );
    assert_eq!(
        perf_field(&perf, "Stripe Bytes Transferred"),
        Some(200_000),
        "112 perf marker must count what arrived (within 10 s): {perf}"
    );
    d.write_all(&block(0, 100_000, &data[100_000..600_000]))
        .unwrap();
    d.write_all(&block(0, 700_000, &data[700_000..])).unwrap();
    d.write_all(&eof_block(EOD, 1)).unwrap();
    let fin = reply_skipping_markers(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_same_file(&s.root.join("slowup.bin"), &data, "slow MODE E upload");
}

#[test]
fn mode_e_upload_resumes_with_a_rest_range_list() {
    let s = start(|_| {});
    let data = random_bytes(2 * 1024 * 1024 + 321, 58);
    let mut c = logged_in(&s);
    mode_e(&mut c);
    // First attempt: two ranges arrive, then the connection that should carry the rest
    // breaks.
    let a = pasv(&mut c);
    let mut d: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
    let r = c.cmd("STOR res.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d[0].write_all(&block(0, 0, &data[..300_000])).unwrap();
    d[0].write_all(&block(0, 600_000, &data[600_000..700_000]))
        .unwrap();
    d[0].write_all(&eof_block(EOD, 2)).unwrap();
    d[1].write_all(&header(0, 500_000, 300_000)).unwrap();
    d[1].write_all(&data[300_000..400_000]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(d);
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 426, "broken first attempt: {fin:?} after {pre:?}");
    assert!(
        !s.root.join("res.bin").exists(),
        "res.bin committed after a broken upload"
    );

    // Resume: the client says what it knows the server holds (REST right before STOR, as
    // REST lives for one command); only the rest is sent.
    let a = pasv(&mut c);
    assert_eq!(c.cmd("REST 0-300000,600000-700000").0, 350);
    let mut d: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
    let r = c.cmd("STOR res.bin");
    assert_eq!(r.0, 150, "resumed STOR: {r:?}");
    d[1].write_all(&block(0, 700_000, &data[700_000..]))
        .unwrap();
    d[0].write_all(&block(0, 300_000, &data[300_000..600_000]))
        .unwrap();
    d[0].write_all(&header(EOD, 0, 0)).unwrap();
    d[1].write_all(&eof_block(EOD, 2)).unwrap();
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "resumed STOR: {fin:?} after {pre:?}");
    assert_same_file(
        &s.root.join("res.bin"),
        &data,
        "MODE E upload resumed by REST ranges",
    );
    assert_no_partials(&s.root);

    // A range list claiming more than the server holds is refused, nothing is committed.
    let a = pasv(&mut c);
    let _d = connect(a);
    assert_eq!(c.cmd("REST 0-5000000").0, 350);
    let (fin, _) = final_reply_of(&mut c, "STOR res2.bin");
    assert!(
        (400..600).contains(&fin.0),
        "REST ranges past the partial: expected an error, got {fin:?}"
    );
    assert!(!s.root.join("res2.bin").exists());
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn abor_during_mode_e_transfers() {
    let s = start(|_| {});
    let big = random_bytes(12 * 1024 * 1024, 59);
    std::fs::write(s.root.join("big.bin"), &big).unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);

    // Upload: part of the data, then ABOR.
    let a = pasv(&mut c);
    let mut d: Vec<TcpStream> = (0..2).map(|_| connect(a)).collect();
    let r = c.cmd("STOR ab.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d[0].write_all(&block(0, 0, &big[..200_000])).unwrap();
    d[1].write_all(&header(0, 1_000_000, 200_000)).unwrap();
    d[1].write_all(&big[200_000..300_000]).unwrap();
    let t = Instant::now();
    let r = c.cmd("ABOR");
    assert_eq!(r.0, 426, "ABOR of a MODE E upload: {r:?}");
    let r = c.reply();
    assert_eq!(r.0, 226, "ABOR of a MODE E upload: {r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "ABOR took {:?}",
        t.elapsed()
    );
    assert!(!s.root.join("ab.bin").exists(), "aborted upload committed");
    drop(d);

    // Download the client does not read (small receive buffer): the sender is blocked on a
    // full socket when ABOR comes.
    let (l, hp) = listen();
    nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::RcvBuf, &65536).unwrap();
    assert_eq!(c.cmd("OPTS RETR Parallelism=2,2,2;").0, 200);
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"RETR big.bin\r\n");
    let d = [accept(&l), accept(&l)];
    let r = c.reply();
    assert_eq!(r.0, 150, "{r:?}");
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = c.cmd("ABOR");
    assert_eq!(r.0, 426, "ABOR of a blocked MODE E download: {r:?}");
    let r = c.reply();
    assert_eq!(r.0, 226, "ABOR of a blocked MODE E download: {r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "ABOR took {:?}",
        t.elapsed()
    );
    drop(d);

    // The session goes on: a whole MODE E download on fresh channels.
    let (l, hp) = listen();
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"RETR big.bin\r\n");
    let mut d = vec![accept(&l), accept(&l)];
    let r = c.reply();
    assert_eq!(r.0, 150, "RETR after ABOR: {r:?}");
    let streams = read_streams(&mut d, "RETR after ABOR");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_bytes(
        &assemble(&streams, big.len(), "RETR after ABOR"),
        &big,
        "RETR after ABOR",
    );
}

#[test]
fn mode_e_edge_cases() {
    let s = start(|_| {});
    std::fs::create_dir(s.root.join("dir")).unwrap();
    std::fs::write(s.root.join("f1"), b"one").unwrap();
    let data = random_bytes(1_000_003, 60);
    std::fs::write(s.root.join("d.bin"), &data).unwrap();
    let mut c = logged_in(&s);
    mode_e(&mut c);

    // A directory cannot be retrieved; a missing file neither.
    for path in ["dir", "missing"] {
        let a = pasv(&mut c);
        let _d = connect(a);
        let (fin, pre) = final_reply_of(&mut c, &format!("RETR {path}"));
        assert!(
            (500..600).contains(&fin.0),
            "RETR {path} in MODE E: expected 5xx, got {fin:?} after {pre:?}"
        );
    }
    // MODE E carries TYPE I only.
    assert_eq!(c.cmd("TYPE A").0, 200);
    let a = pasv(&mut c);
    let _d = connect(a);
    let (fin, pre) = final_reply_of(&mut c, "RETR d.bin");
    assert!(
        (400..600).contains(&fin.0),
        "RETR in MODE E with TYPE A: expected an error, got {fin:?} after {pre:?}"
    );
    assert_eq!(c.cmd("TYPE I").0, 200);

    // An absurd SBUF is capped, not fatal.
    assert_eq!(c.cmd("SBUF 1000000000000").0, 200);
    // MLSD in MODE E: the listing comes as blocks.
    let (l, hp) = listen();
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"MLSD\r\n");
    let mut d = vec![accept(&l)];
    let r = c.reply();
    assert!(r.0 == 150 || r.0 == 125, "MLSD in MODE E: {r:?}");
    let streams = read_streams(&mut d, "MLSD");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "MLSD in MODE E: {fin:?}");
    let len: usize = streams[0].blocks.iter().map(|b| b.1.len()).sum();
    let listing = String::from_utf8(assemble(&streams, len, "MLSD")).unwrap();
    for name in ["dir", "f1", "d.bin"] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "MLSD in MODE E lacks {name}:\n{listing}"
        );
    }
    // The same connection, reused, then carries a file.
    let r = c.cmd("RETR d.bin");
    assert_eq!(r.0, 125, "RETR after MLSD on the kept channel: {r:?}");
    let streams = read_streams(&mut d, "RETR after MLSD");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_bytes(
        &assemble(&streams, data.len(), "RETR"),
        &data,
        "RETR after MLSD",
    );
    assert_eq!(c.cmd("NOOP").0, 200);
}

#[test]
fn mode_e_stor_over_port_and_many_streams_retr() {
    let s = start(|_| {});
    let data = random_bytes(2 * 1024 * 1024 + 7, 61);
    let mut c = logged_in(&s);
    mode_e(&mut c);
    // STOR with PORT: the server connects once; we send the blocks on that connection.
    let (l, hp) = listen();
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"STOR port.bin\r\n");
    let mut d = accept(&l);
    let r = c.reply();
    assert_eq!(r.0, 150, "STOR over PORT in MODE E: {r:?}");
    for (off, range) in blocks_of(data.len(), 300_000).into_iter().rev() {
        d.write_all(&block(0, off, &data[range])).unwrap();
    }
    d.write_all(&eof_block(EOD, 1)).unwrap();
    let (fin, pre) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "STOR over PORT: {fin:?} after {pre:?}");
    assert_same_file(&s.root.join("port.bin"), &data, "MODE E STOR over PORT");
    drop(d);

    // 16 parallel streams, small blocks: every stream gets some, all reassemble.
    assert_eq!(c.cmd("OPTS RETR Parallelism=16,16,16;").0, 200);
    let (l, hp) = listen();
    assert_eq!(c.cmd(&format!("PORT {hp}")).0, 200);
    c.send(b"RETR port.bin\r\n");
    let mut socks: Vec<TcpStream> = (0..16).map(|_| accept(&l)).collect();
    let r = c.reply();
    assert_eq!(r.0, 150, "{r:?}");
    let streams = read_streams(&mut socks, "16-stream RETR");
    let (fin, _) = final_reply(&mut c);
    assert_eq!(fin.0, 226, "{fin:?}");
    assert_bytes(
        &assemble(&streams, data.len(), "16 streams"),
        &data,
        "16-stream RETR",
    );
}

#[test]
fn mode_e_upload_finished_after_the_client_left_is_not_committed() {
    let s = start(|_| {});
    let old = b"old contents".to_vec();
    std::fs::write(s.root.join("left.bin"), &old).unwrap();
    let data = random_bytes(500_000, 62);
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let a = pasv(&mut c);
    let mut d = connect(a);
    let r = c.cmd("STOR left.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d.write_all(&block(0, 0, &data)).unwrap();
    // The control connection goes away; then the data side completes properly.
    let _ = c.w.shutdown(std::net::Shutdown::Both);
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let _ = d.write_all(&eof_block(EOD, 1));
    std::thread::sleep(Duration::from_millis(500));
    drop(d);
    let partial = s.root.join(gridos_ftp::server::partial_name("left.bin"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < data.len() as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read(s.root.join("left.bin")).unwrap(),
        old,
        "an upload whose client left before 226 replaced the file"
    );
    // The server still serves others.
    let mut c2 = logged_in(&s);
    assert_eq!(c2.retr("left.bin").unwrap(), old);
}

#[test]
fn mode_e_block_after_eod_does_not_leak_into_the_next_transfer() {
    // A block sent after the EOD (and EOF) that completed a transfer belongs to no transfer:
    // the client sent it before it issued the next command. Either the transfer it follows
    // fails (426/451, not committed), or the block is dropped — it must never become data of
    // the next upload over the reused channel.
    let s = start(|_| {});
    let mut c = logged_in(&s);
    mode_e(&mut c);
    let a_data = random_bytes(1000, 63);
    let b_data = random_bytes(1000, 64);
    let a = pasv(&mut c);
    let mut d = connect(a);
    let r = c.cmd("STOR a.bin");
    assert_eq!(r.0, 150, "{r:?}");
    d.write_all(&block(0, 0, &a_data)).unwrap();
    d.write_all(&eof_block(EOD, 1)).unwrap();
    d.write_all(&block(0, 1_000_000, b"STRAYBLOCK")).unwrap();
    let (fin, pre) = final_reply(&mut c);
    match fin.0 {
        426 | 451 => {
            assert!(
                !s.root.join("a.bin").exists(),
                "a.bin committed despite {fin:?}"
            );
            return;
        }
        226 => assert_same_file(
            &s.root.join("a.bin"),
            &a_data,
            "a.bin (stray block after EOD)",
        ),
        _ => panic!("STOR a.bin with a block after EOD: {fin:?} after {pre:?}"),
    }
    // The channel is reused for the next upload.
    let r = c.cmd("STOR b.bin");
    assert!(r.0 == 125 || r.0 == 150, "STOR b.bin: {r:?}");
    let _ = d.write_all(&block(0, 0, &b_data));
    let _ = d.write_all(&eof_block(EOD, 1));
    let (fin, pre) = final_reply(&mut c);
    match fin.0 {
        226 => {
            let got = std::fs::read(s.root.join("b.bin")).unwrap();
            assert!(
                got == b_data,
                "the block sent after a.bin's EOD leaked into b.bin: b.bin is {} bytes (sent {}), \
                 STRAYBLOCK found: {}",
                got.len(),
                b_data.len(),
                got.windows(10).any(|w| w == b"STRAYBLOCK")
            );
        }
        code if (400..600).contains(&code) => {
            assert!(
                !s.root.join("b.bin").exists(),
                "b.bin committed despite {fin:?}"
            );
        }
        _ => panic!("STOR b.bin: {fin:?} after {pre:?}"),
    }
    assert_eq!(c.cmd("NOOP").0, 200);
}
