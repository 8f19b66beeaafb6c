//! File checksums for GridFTP's `CKSM <alg> <offset> <length> <path>` command and the
//! client's `--verify`.
//!
//! The server computes the checksum next to the data ([`file_checksum`]); the client hashes
//! what it sent or received ([`Hasher`]) and compares the two strings, so both sides must
//! print exactly the same text. The format is the one globus-gridftp-server replies with
//! (checked against 13.24), so our client, our server and `globus-url-copy
//! -verify-checksum` all agree:
//!
//! | algorithm | output                                                            |
//! |-----------|-------------------------------------------------------------------|
//! | `MD5`     | 32 lower-case hex digits                                          |
//! | `SHA1`    | 40 lower-case hex digits                                          |
//! | `SHA256`  | 64 lower-case hex digits                                          |
//! | `SHA512`  | 128 lower-case hex digits                                         |
//! | `ADLER32` | the 32-bit value as 8 lower-case hex digits, zero-padded (`""` → `00000001`) |
//! | `CRC32C`  | the 32-bit value as 8 lower-case hex digits, zero-padded (`""` → `00000000`) |
//!
//! globus-gridftp-server does not implement `CRC32C`; ours follows the same convention as
//! `ADLER32` for it.
//!
//! ```
//! use gridos_ftp::checksum::{Algorithm, Hasher};
//!
//! let mut h = Hasher::new(Algorithm::parse("adler32").unwrap());
//! h.update(b"ab");
//! h.update(b"c");
//! assert_eq!(h.finish(), "024d0127");
//! ```

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::str::FromStr;

use gridos_io::CancelToken;
use sha2::Digest;

/// Algorithm names as FEAT advertises them, upper-case.
pub const ALGORITHMS: &[&str] = &["MD5", "ADLER32", "SHA1", "SHA256", "SHA512", "CRC32C"];

/// Every algorithm, in the order of [`ALGORITHMS`].
const ALL: [Algorithm; 6] = [
    Algorithm::Md5,
    Algorithm::Adler32,
    Algorithm::Sha1,
    Algorithm::Sha256,
    Algorithm::Sha512,
    Algorithm::Crc32c,
];

/// How much of the file one `pread` covers: large enough that syscall overhead vanishes
/// next to hashing, small enough that cancellation is noticed quickly.
const PIECE: usize = 1 << 20;

/// A checksum algorithm of the `CKSM` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 1321).
    Md5,
    /// Adler-32 (RFC 1950).
    Adler32,
    /// SHA-1 (FIPS 180-4).
    Sha1,
    /// SHA-256 (FIPS 180-4).
    Sha256,
    /// SHA-512 (FIPS 180-4).
    Sha512,
    /// CRC-32C, the Castagnoli polynomial (RFC 3720).
    Crc32c,
}

impl Algorithm {
    /// The algorithm called `name`, ignoring ASCII case; only the names in [`ALGORITHMS`]
    /// are accepted (not `SHA-256` and the like, which globus-gridftp-server rejects too).
    pub fn parse(name: &str) -> Option<Algorithm> {
        ALL.into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The upper-case name, as in [`ALGORITHMS`].
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Adler32 => "ADLER32",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
            Algorithm::Crc32c => "CRC32C",
        }
    }
}

impl FromStr for Algorithm {
    type Err = ChecksumError;

    fn from_str(s: &str) -> Result<Algorithm, ChecksumError> {
        Algorithm::parse(s).ok_or_else(|| ChecksumError::UnknownAlgorithm(s.to_owned()))
    }
}

/// Why a checksum could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    /// The algorithm name is not one of [`ALGORITHMS`].
    #[error("unknown checksum algorithm {0:?}")]
    UnknownAlgorithm(String),
    /// The range starts beyond the end of the file.
    #[error("offset {offset} is past the end of the file ({size} bytes)")]
    OffsetPastEnd {
        /// Requested start.
        offset: u64,
        /// File size.
        size: u64,
    },
    /// The range ends beyond the end of the file.
    #[error("range {offset}+{length} is past the end of the file ({size} bytes)")]
    RangePastEnd {
        /// Requested start.
        offset: u64,
        /// Requested length.
        length: u64,
        /// File size.
        size: u64,
    },
    /// The cancel token fired.
    #[error("checksum cancelled")]
    Cancelled,
    /// Reading the file failed (including the file shrinking while it was read).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Incremental hasher: feed it the data in any number of pieces, then [`finish`] it.
///
/// [`finish`]: Hasher::finish
#[derive(Clone)]
pub struct Hasher(State);

#[derive(Clone)]
enum State {
    Md5(md5::Md5),
    Adler32(adler2::Adler32),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Crc32c(u32),
}

impl Hasher {
    /// A hasher for `alg` over empty input.
    pub fn new(alg: Algorithm) -> Hasher {
        Hasher(match alg {
            Algorithm::Md5 => State::Md5(md5::Md5::new()),
            Algorithm::Adler32 => State::Adler32(adler2::Adler32::new()),
            Algorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
            Algorithm::Crc32c => State::Crc32c(0),
        })
    }

    /// Appends `data` to the input.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Md5(h) => h.update(data),
            State::Adler32(h) => h.write_slice(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
            State::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
        }
    }

    /// The checksum in the `CKSM` reply format (see the [module docs](self)).
    pub fn finish(self) -> String {
        match self.0 {
            State::Md5(h) => hex(&h.finalize()),
            State::Sha1(h) => hex(&h.finalize()),
            State::Sha256(h) => hex(&h.finalize()),
            State::Sha512(h) => hex(&h.finalize()),
            // The 32-bit checksums print as numbers, zero-padded: globus replies `00000001`
            // for an empty file, and a string compare on the client needs the same width.
            State::Adler32(h) => format!("{:08x}", h.checksum()),
            State::Crc32c(crc) => format!("{crc:08x}"),
        }
    }
}

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Checksum of `length` bytes of `file` from `offset` (`None` = to the end of file).
///
/// A range that starts past the end is [`ChecksumError::OffsetPastEnd`], one that ends
/// past it [`ChecksumError::RangePastEnd`]: a checksum of fewer bytes than asked for would
/// look like a mismatch (or, worse, a match) to the client, so it is never returned. An
/// empty range, including `offset` == size, gives the checksum of empty input.
///
/// Reads with `pread` in 1 MiB pieces, so the file position is untouched and the file may
/// be shared; `cancel` is checked before each piece.
pub fn file_checksum(
    file: &File,
    alg: Algorithm,
    offset: u64,
    length: Option<u64>,
    cancel: Option<&CancelToken>,
) -> Result<String, ChecksumError> {
    let size = file.metadata()?.len();
    if offset > size {
        return Err(ChecksumError::OffsetPastEnd { offset, size });
    }
    let length = match length {
        None => size - offset,
        Some(length) if offset.checked_add(length).is_some_and(|end| end <= size) => length,
        Some(length) => {
            return Err(ChecksumError::RangePastEnd {
                offset,
                length,
                size,
            });
        }
    };

    let mut hasher = Hasher::new(alg);
    // Small ranges don't need a whole 1 MiB buffer.
    let mut buf = vec![0; usize::try_from(length).map_or(PIECE, |l| l.min(PIECE))];
    let (mut pos, end) = (offset, offset + length);
    while pos < end {
        if cancel.is_some_and(CancelToken::is_cancelled) {
            return Err(ChecksumError::Cancelled);
        }
        let n = usize::try_from(end - pos).map_or(buf.len(), |r| r.min(buf.len()));
        // read_exact_at loops over read_at, retrying EINTR and short reads; if the file
        // shrank since the size check it fails with UnexpectedEof rather than hashing less.
        file.read_exact_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const FOX: &[u8] = b"The quick brown fox jumps over the lazy dog";

    /// `(algorithm, [checksum of "", of "abc", of FOX])`. MD5, SHA*, and ADLER32 are the
    /// replies of globus-gridftp-server 13.24 to `CKSM <alg> 0 -1`; CRC32C (which it lacks)
    /// is from a bitwise reference implementation.
    const VECTORS: &[(Algorithm, [&str; 3])] = &[
        (
            Algorithm::Md5,
            [
                "d41d8cd98f00b204e9800998ecf8427e",
                "900150983cd24fb0d6963f7d28e17f72",
                "9e107d9d372bb6826bd81d3542a419d6",
            ],
        ),
        (Algorithm::Adler32, ["00000001", "024d0127", "5bdc0fda"]),
        (
            Algorithm::Sha1,
            [
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
                "a9993e364706816aba3e25717850c26c9cd0d89d",
                "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
            ],
        ),
        (
            Algorithm::Sha256,
            [
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
            ],
        ),
        (
            Algorithm::Sha512,
            [
                "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                 47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "07e547d9586f6a73f73fbac0435ed76951218fb7d0c8d788a309d785436bbb64\
                 2e93a252a954f23912547d1e8a3b5ed6e1bfd7097821233fa0538f3db854fee6",
            ],
        ),
        (Algorithm::Crc32c, ["00000000", "364b3fb7", "22620404"]),
    ];

    fn one_shot(alg: Algorithm, data: &[u8]) -> String {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.finish()
    }

    fn temp_file(data: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        f
    }

    /// Deterministic pseudo-random bytes (xorshift64).
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[3]
            })
            .collect()
    }

    #[test]
    fn names() {
        assert_eq!(ALL.len(), ALGORITHMS.len());
        for (alg, name) in ALL.into_iter().zip(ALGORITHMS) {
            assert_eq!(alg.name(), *name);
            assert_eq!(Algorithm::parse(name), Some(alg));
            assert_eq!(Algorithm::parse(&name.to_lowercase()), Some(alg));
            assert_eq!(name.parse::<Algorithm>().unwrap(), alg);
        }
        assert_eq!(Algorithm::parse("Sha256"), Some(Algorithm::Sha256));
        for bad in ["", "SHA-256", "CRC32", "MD4", " MD5"] {
            assert_eq!(Algorithm::parse(bad), None);
            assert!(matches!(
                bad.parse::<Algorithm>(),
                Err(ChecksumError::UnknownAlgorithm(s)) if s == bad
            ));
        }
    }

    #[test]
    fn known_vectors() {
        assert_eq!(VECTORS.len(), ALL.len());
        for &(alg, expected) in VECTORS {
            for (data, want) in [&b""[..], b"abc", FOX].into_iter().zip(expected) {
                assert_eq!(one_shot(alg, data), want, "{alg:?} of {data:?}");
                let file = temp_file(data);
                assert_eq!(file_checksum(&file, alg, 0, None, None).unwrap(), want);
            }
        }
    }

    #[test]
    fn adler32_zero_padded() {
        // globus-gridftp-server: "CKSM ADLER32 0 -1 a" → "213 00620062".
        assert_eq!(one_shot(Algorithm::Adler32, b"a"), "00620062");
    }

    #[test]
    fn pieces_equal_one_shot() {
        for alg in ALL {
            let mut h = Hasher::new(alg);
            for chunk in FOX.chunks(5) {
                h.update(chunk);
            }
            h.update(b"");
            assert_eq!(h.finish(), one_shot(alg, FOX), "{alg:?}");
        }
    }

    #[test]
    fn ranges() {
        let file = temp_file(FOX);
        let len = FOX.len() as u64;
        for alg in ALL {
            for (offset, length) in [(0, Some(3)), (4, Some(5)), (10, None), (40, Some(3))] {
                let start = offset as usize;
                let end = length.map_or(FOX.len(), |l| start + l as usize);
                assert_eq!(
                    file_checksum(&file, alg, offset, length, None).unwrap(),
                    one_shot(alg, &FOX[start..end]),
                    "{alg:?} {offset} {length:?}"
                );
            }
            // Empty ranges: at the end, and zero-length in the middle.
            let empty = one_shot(alg, b"");
            assert_eq!(file_checksum(&file, alg, len, None, None).unwrap(), empty);
            assert_eq!(
                file_checksum(&file, alg, len, Some(0), None).unwrap(),
                empty
            );
            assert_eq!(file_checksum(&file, alg, 7, Some(0), None).unwrap(), empty);
        }
    }

    #[test]
    fn offset_past_end() {
        let file = temp_file(b"abc");
        for length in [None, Some(0), Some(1)] {
            let err = file_checksum(&file, Algorithm::Md5, 4, length, None).unwrap_err();
            assert!(
                matches!(err, ChecksumError::OffsetPastEnd { offset: 4, size: 3 }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn range_past_end() {
        let file = temp_file(b"abc");
        for (offset, length) in [(0, 4), (2, 2), (3, 1), (1, u64::MAX)] {
            let err = file_checksum(&file, Algorithm::Md5, offset, Some(length), None).unwrap_err();
            assert!(
                matches!(err, ChecksumError::RangePastEnd { offset: o, length: l, size: 3 }
                    if o == offset && l == length),
                "{err:?}"
            );
        }
    }

    #[test]
    fn larger_than_a_piece() {
        let data = noise(3 * PIECE + 7);
        let file = temp_file(&data);
        let token = CancelToken::new();
        for alg in ALL {
            // Compare with the crates' own one-shot functions, not only our Hasher, so a
            // bug in how pieces are fed would show.
            let whole = match alg {
                Algorithm::Md5 => hex(&md5::Md5::digest(&data)),
                Algorithm::Adler32 => format!("{:08x}", adler2::adler32_slice(&data)),
                Algorithm::Sha1 => hex(&sha1::Sha1::digest(&data)),
                Algorithm::Sha256 => hex(&sha2::Sha256::digest(&data)),
                Algorithm::Sha512 => hex(&sha2::Sha512::digest(&data)),
                Algorithm::Crc32c => format!("{:08x}", crc32c::crc32c(&data)),
            };
            assert_eq!(
                file_checksum(&file, alg, 0, None, Some(&token)).unwrap(),
                whole
            );
            // A range that straddles piece boundaries and ends before EOF.
            let (offset, length) = (PIECE as u64 - 3, 2 * PIECE as u64 + 5);
            let slice = &data[offset as usize..(offset + length) as usize];
            assert_eq!(
                file_checksum(&file, alg, offset, Some(length), None).unwrap(),
                one_shot(alg, slice),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn cancellation() {
        let file = temp_file(&noise(2 * PIECE));
        let token = CancelToken::new();
        token.cancel();
        let err = file_checksum(&file, Algorithm::Sha256, 0, None, Some(&token)).unwrap_err();
        assert!(matches!(err, ChecksumError::Cancelled), "{err:?}");
    }

    #[test]
    fn io_error() {
        // A file opened write-only can't be read: the error comes back as Io, not a checksum.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let file = File::options().write(true).open(&path).unwrap();
        let err = file_checksum(&file, Algorithm::Md5, 0, None, None).unwrap_err();
        assert!(matches!(err, ChecksumError::Io(_)), "{err:?}");
    }
}
