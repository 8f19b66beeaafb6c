//! Arbitrary bytes through a Session (LineReader → parser → state machine), with a fake
//! driver answering every action. The first byte picks the feature set, anonymous logins, a
//! login up front, the TLS rules and an implicit-TLS start; each action's
//! outcome is taken from the input too.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use gridos_ftp::proto::{
    Action, AuthOutcome, Features, FsError, FsErrorKind, FsOutcome, Session, SessionConfig,
    TlsEstablished, TlsRules, TransferDone, TransferError, TransferStart,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let features = if flags & 1 == 0 {
        Features::standard()
    } else {
        Features::gridftp()
    };
    let config = SessionConfig {
        anonymous: flags & 2 != 0,
        features,
        tls: TlsRules {
            offered: flags & 8 != 0,
            passwords: flags & 16 != 0,
            required: flags & 32 != 0,
        },
        ..SessionConfig::default()
    };
    let auth = |u: &str, p: &str| {
        if u == "u" && p == "p" {
            AuthOutcome::Granted { read_only: false }
        } else {
            AuthOutcome::Denied
        }
    };
    let peer = "127.0.0.1:4000".parse().unwrap();
    let mut s = if flags & 64 != 0 {
        Session::new_protected(config, Box::new(auth), peer, TlsEstablished::default())
    } else {
        Session::new(config, Box::new(auth), peer)
    };
    if flags & 4 != 0 {
        s.handle_input(b"USER u\r\nPASS p\r\n");
    }
    let mut k = 0usize;
    for chunk in rest.chunks(7) {
        s.handle_input(chunk);
        for _ in 0..64 {
            while let Some(r) = s.poll_reply() {
                assert!((100..700).contains(&r.code));
            }
            let Some(a) = s.poll_action() else { break };
            let o = rest.get(k % rest.len().max(1)).copied().unwrap_or(0);
            k += 1;
            match a {
                Action::OpenPassive(_) => {
                    let r = if o & 1 == 0 {
                        Ok(vec!["127.0.0.1:5000".parse().unwrap()])
                    } else {
                        Err(gridos_ftp::proto::PassiveError::NoPort)
                    };
                    s.handle_passive_opened(r).unwrap();
                }
                Action::Retr(_) | Action::Stor(_) | Action::List(_) => {
                    if o & 1 == 0 {
                        s.handle_transfer_started(TransferStart::default()).unwrap();
                    }
                    let r = match o % 3 {
                        0 => Ok(TransferDone { bytes: 1 }),
                        1 => Err(TransferError::Aborted),
                        _ => Err(TransferError::Fs(FsError::new(FsErrorKind::NotFound))),
                    };
                    s.handle_transfer_done(r).unwrap();
                }
                Action::StartTls => {
                    let r = match o % 3 {
                        0 => Some(TlsEstablished::default()),
                        1 => Some(TlsEstablished {
                            subject: Some("/C=XX/O=Grid/CN=u".into()),
                        }),
                        _ => None,
                    };
                    s.handle_tls_established(r).unwrap();
                }
                Action::ClosePassive | Action::Abort => {}
                _ => {
                    let r = match o % 4 {
                        0 => Ok(FsOutcome::Done),
                        1 => Ok(FsOutcome::Size(u64::from(o))),
                        2 => Ok(FsOutcome::Modified(
                            UNIX_EPOCH + Duration::from_secs(u64::from(o)),
                        )),
                        _ => Err(FsError::new(FsErrorKind::PermissionDenied)),
                    };
                    s.handle_fs_result(r).unwrap();
                }
            }
        }
    }
});
