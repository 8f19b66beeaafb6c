//! Errors of the protocol core.
//!
//! [`Error`] is the one error type of the module (and of the crate); it wraps the narrower
//! enums each part returns, so callers can match finely or just use `?`.

/// Any error of the protocol core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command line could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A reply (or a reply argument such as a PASV address) could not be parsed.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// A MODE E block was malformed or violated the transfer's limits.
    #[error(transparent)]
    ModeE(#[from] ModeEError),
    /// The driver reported an outcome the session was not waiting for (e.g.
    /// `handle_fs_result` with no file-system action pending): a driver bug.
    #[error("unexpected report from the driver")]
    UnexpectedReport,
}

/// Why no passive listener could be opened: the text of the `425` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PassiveError {
    /// PASV on a control connection that arrived over IPv6.
    #[error("no IPv4 address")]
    NoIpv4,
    /// Every port of the configured range is taken.
    #[error("no port available")]
    NoPort,
    /// Binding or reading the listener failed.
    #[error("{0}")]
    Io(std::io::ErrorKind),
}

/// Why a command line was not turned into a [`Command`](super::Command).
///
/// [`ParseError::reply_code`] gives the reply the server should send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line was empty (after Telnet sequences were stripped).
    #[error("empty command line")]
    Empty,
    /// The verb is not one this crate knows (reply 500).
    #[error("unrecognised command {verb:?}")]
    Unrecognised {
        /// The verb as received, upper-cased, lossily decoded and cut to 16 characters.
        verb: String,
    },
    /// A known verb that this crate recognises but never implements, e.g. SMNT or the RFC 2228
    /// security commands other than AUTH/PBSZ/PROT (reply 502).
    #[error("command {verb} not implemented")]
    NotImplemented {
        /// The verb, upper-cased.
        verb: &'static str,
    },
    /// A known verb with arguments that do not fit its syntax (reply 501).
    #[error("bad arguments to {verb}: {reason}")]
    BadArguments {
        /// The verb, upper-cased.
        verb: &'static str,
        /// What was wrong, suitable for the reply text.
        reason: &'static str,
    },
}

impl ParseError {
    /// The FTP reply code for this error: 500, 501 or 502.
    pub fn reply_code(&self) -> u16 {
        match self {
            ParseError::Empty | ParseError::Unrecognised { .. } => 500,
            ParseError::NotImplemented { .. } => 502,
            ParseError::BadArguments { .. } => 501,
        }
    }
}

/// Errors parsing replies and reply/command arguments (addresses, timestamps, markers, facts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A reply line did not start with a three-digit code.
    #[error("malformed reply line")]
    MalformedLine,
    /// A reply line or a whole multi-line reply exceeded the configured limit.
    #[error("reply too long")]
    TooLong,
    /// A host-port (`h1,h2,h3,h4,p1,p2`) argument was malformed.
    #[error("malformed host-port")]
    HostPort,
    /// An EPRT/EPSV argument was malformed.
    #[error("malformed extended address")]
    ExtendedAddress,
    /// A time value (`YYYYMMDDHHMMSS[.sss]`) was malformed or out of range.
    #[error("malformed time value")]
    Time,
    /// An MLSx fact line was malformed.
    #[error("malformed MLSx facts")]
    Facts,
    /// A range list (`a-b,c-d`) was malformed.
    #[error("malformed range list")]
    Ranges,
    /// A 112 performance marker was malformed.
    #[error("malformed performance marker")]
    PerfMarker,
    /// The reply had an unexpected code.
    #[error("unexpected reply code {0}")]
    UnexpectedCode(u16),
}

/// Errors of the MODE E (GFD.20 extended block mode) codec and reassembly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModeEError {
    /// Fewer than 17 bytes were given to the header decoder.
    #[error("short MODE E header")]
    ShortHeader,
    /// `offset + count` does not fit in 64 bits.
    #[error("MODE E block offset {offset} + count {count} overflows")]
    Overflow {
        /// Offset field of the block.
        offset: u64,
        /// Byte count field of the block.
        count: u64,
    },
    /// The block reaches past the largest size the transfer may have.
    #[error("MODE E block {offset}+{count} exceeds the limit of {limit} bytes")]
    BeyondLimit {
        /// Offset field of the block.
        offset: u64,
        /// Byte count field of the block.
        count: u64,
        /// The limit in force.
        limit: u64,
    },
    /// Two EOF blocks announced different numbers of data connections, or the count was
    /// zero or above the configured maximum.
    #[error("bad EOF data connection count {0}")]
    BadEofCount(u64),
    /// More EOD blocks arrived than data connections were announced, or a stream sent data
    /// after its EOD.
    #[error("MODE E stream sent data after EOD or too many EODs")]
    AfterEod,
    /// An EOF block carried a payload (its offset field is a connection count, not a
    /// position, so the data could not be placed).
    #[error("MODE E EOF block with a payload")]
    EofWithData,
    /// A header arrived on a stream while the previous block's payload was still expected.
    #[error("MODE E header on stream {0} before the previous payload was complete")]
    PayloadPending(usize),
    /// A stream id passed to the receiver is not one it knows.
    #[error("unknown MODE E stream {0}")]
    UnknownStream(usize),
    /// The driver reported more payload bytes written than the current block holds.
    #[error("more bytes reported written on MODE E stream {0} than its block holds")]
    BadWriteReport(usize),
    /// A data stream closed before sending EOD.
    #[error("MODE E stream {0} closed without EOD")]
    ClosedWithoutEod(usize),
    /// The sender plan was asked for zero streams or a zero block size.
    #[error("invalid MODE E sender parameters")]
    BadPlan,
}

/// Convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
