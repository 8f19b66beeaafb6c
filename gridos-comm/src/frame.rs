//! Length-prefixed frames `(src GPID, dst GPID, tag, payload)`.
//!
//! Wire format (all integers big-endian):
//!
//! ```text
//! u32 body_len
//! body: u8 version (=1) | u16 src_len | src (GPID text) | u16 dst_len | dst | u32 tag | payload
//! ```
//!
//! `body_len` is checked against the reader's maximum *before* anything is allocated; a frame
//! over the limit yields [`Error::FrameTooLarge`] and the stream must be dropped. The maximum
//! can be a [`FrameLimit`], changed while a reader runs (a server keeps it small until the peer
//! has authenticated).

use crate::error::{Error, Result};
use crate::gpid::Gpid;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Default maximum frame body size (8 MiB).
pub const DEFAULT_MAX_FRAME: u32 = 8 << 20;
const VERSION: u8 = 1;

/// Tags at or above this value are reserved for gridos itself (control traffic).
pub const RESERVED_TAG_BASE: u32 = 0xFFFF_0000;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Sender.
    pub src: Gpid,
    /// Addressee.
    pub dst: Gpid,
    /// Application-chosen tag (receivers may select on it).
    pub tag: u32,
    /// Bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Serialises the frame including its length prefix.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let src = self.src.to_string();
        let dst = self.dst.to_string();
        let body_len = 1 + 2 + src.len() + 2 + dst.len() + 4 + self.payload.len();
        let body_len32 = u32::try_from(body_len).map_err(|_| Error::FrameTooLarge {
            len: body_len as u64,
            max: u32::MAX,
        })?;
        let mut out = Vec::with_capacity(4 + body_len);
        out.extend_from_slice(&body_len32.to_be_bytes());
        out.push(VERSION);
        // GPID strings are at most ~100 bytes, far below u16::MAX.
        out.extend_from_slice(&(src.len() as u16).to_be_bytes());
        out.extend_from_slice(src.as_bytes());
        out.extend_from_slice(&(dst.len() as u16).to_be_bytes());
        out.extend_from_slice(dst.as_bytes());
        out.extend_from_slice(&self.tag.to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Parses a frame body (without the length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Frame> {
        let mut cur = body;
        let mut take = |n: usize, what: &str| -> Result<&[u8]> {
            if cur.len() < n {
                return Err(Error::BadFrame(format!("truncated {what}")));
            }
            let (a, b) = cur.split_at(n);
            cur = b;
            Ok(a)
        };
        let v = take(1, "version")?[0];
        if v != VERSION {
            return Err(Error::BadFrame(format!("unknown frame version {v}")));
        }
        let mut gpid = |what: &str| -> Result<Gpid> {
            let l = take(2, what)?;
            let len = u16::from_be_bytes([l[0], l[1]]) as usize;
            let raw = take(len, what)?;
            let s = std::str::from_utf8(raw)
                .map_err(|_| Error::BadFrame(format!("{what} is not UTF-8")))?;
            s.parse()
                .map_err(|e: Error| Error::BadFrame(format!("{what}: {e}")))
        };
        let src = gpid("src")?;
        let dst = gpid("dst")?;
        let t = take(4, "tag")?;
        let tag = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
        Ok(Frame {
            src,
            dst,
            tag,
            payload: cur.to_vec(),
        })
    }
}

/// The largest frame body a reader accepts, shared between the reader and the owner of the
/// channel so that it can be changed while the reader runs.
///
/// The limit is read after each length prefix arrives, so a new value applies to every frame
/// whose prefix the peer sends after [`FrameLimit::set`] returns.
#[derive(Clone, Debug)]
pub struct FrameLimit(Arc<AtomicU32>);

impl FrameLimit {
    /// A limit of `max` bytes.
    pub fn new(max: u32) -> Self {
        FrameLimit(Arc::new(AtomicU32::new(max)))
    }
    /// The current limit.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    /// Changes the limit for the frames that follow.
    pub fn set(&self, max: u32) {
        self.0.store(max, Ordering::SeqCst);
    }
}

/// Reads one frame, refusing bodies over `max` bytes. `Ok(None)` on a clean end of stream
/// before the first byte of a frame.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    max: u32,
) -> Result<Option<Frame>> {
    read_frame_limited(r, &FrameLimit::new(max)).await
}

/// [`read_frame`] with a limit that may change between frames.
pub async fn read_frame_limited<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    limit: &FrameLimit,
) -> Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    // Read only now: a limit raised while we waited for this prefix applies to it.
    let max = limit.get();
    if len > max {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max,
        });
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Closed
        } else {
            e.into()
        }
    })?;
    Frame::decode_body(&body).map(Some)
}

/// Writes one frame (and flushes).
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, f: &Frame) -> Result<()> {
    let bytes = f.encode()?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> Gpid {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn roundtrip_and_limits() {
        let f = Frame {
            src: g("a.1.2"),
            dst: g("b.3.4"),
            tag: 7,
            payload: b"hello".to_vec(),
        };
        let bytes = f.encode().unwrap();
        let mut rd = &bytes[..];
        assert_eq!(read_frame(&mut rd, 1024).await.unwrap(), Some(f.clone()));
        assert_eq!(read_frame(&mut rd, 1024).await.unwrap(), None);
        let mut rd = &bytes[..];
        let e = read_frame(&mut rd, 10).await.unwrap_err();
        assert!(matches!(e, Error::FrameTooLarge { max: 10, .. }), "{e}");
        let mut bad = bytes.clone();
        bad[4] = 9;
        let e = read_frame(&mut &bad[..], 1024).await.unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
        let e = Frame::decode_body(&[1, 0, 5, b'x']).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[tokio::test]
    async fn limit_changes_between_frames_and_refuses_before_reading_the_body() {
        let big = Frame {
            src: g("a.1.2"),
            dst: g("b.3.4"),
            tag: 7,
            payload: vec![5; 4000],
        };
        let bytes = big.encode().unwrap();
        let limit = FrameLimit::new(1000);
        // Only the prefix is available: the refusal must not wait for (or allocate) the body.
        let e = read_frame_limited(&mut &bytes[..4], &limit)
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::FrameTooLarge { len, max: 1000 } if len == bytes.len() as u64 - 4),
            "{e}"
        );
        limit.set(8000);
        let got = read_frame_limited(&mut &bytes[..], &limit).await.unwrap();
        assert_eq!(got, Some(big));
    }
}
