//! The server's TLS entry: arbitrary bytes as a client's first flights into a rustls server
//! connection built from our `ServerTls` (certificate, TLS 1.2/1.3, ALPN, client-certificate
//! verifier), fed in input-chosen pieces; and arbitrary bytes as a client certificate for the
//! grid-mapfile subject reader.
#![no_main]

use std::io::Read;
use std::sync::{Arc, OnceLock};

use gridos_ftp::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use gridos_ftp::tls::rustls::{RootCertStore, ServerConfig, ServerConnection};
use gridos_ftp::tls::{ServerTls, subject_of};
use libfuzzer_sys::fuzz_target;

fn config() -> Arc<ServerConfig> {
    static C: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    Arc::clone(C.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("cert");
        let mut roots = RootCertStore::empty();
        roots.add(cert.der().clone()).expect("root");
        let der = PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        ServerTls::new(vec![cert.der().clone()], der, Some(roots))
            .expect("server tls")
            .session()
            .config()
    }))
}

fuzz_target!(|data: &[u8]| {
    let _ = subject_of(&CertificateDer::from(data));
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let Ok(mut conn) = ServerConnection::new(config()) else {
        return;
    };
    let at = (usize::from(cut) * 8).min(rest.len());
    let mut sink = Vec::new();
    for piece in [&rest[..at], &rest[at..]] {
        let mut r = piece;
        while !r.is_empty() {
            match conn.read_tls(&mut r) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if conn.process_new_packets().is_err() {
                let _ = conn.write_tls(&mut sink);
                return;
            }
            while conn.wants_write() {
                if conn.write_tls(&mut sink).is_err() {
                    break;
                }
            }
            let mut plain = [0u8; 256];
            let _ = conn.reader().read(&mut plain);
        }
    }
});
