//! Our client's FTPS against vsftpd (OpenSSL) on loopback, certificates made in the test:
//! explicit and implicit TLS, passive and active data connections that must resume the
//! control session (`require_ssl_reuse=YES`), the automatic upgrade before a password, and
//! the certificates that must be refused, each with its reason. Bytes checked by SHA-256.

#[path = "client_peers.rs"]
mod peers;

use gridos_ftp::client::{Client, ClientConfig, Error, PutMode, TlsMode};
use gridos_ftp::tls::{ClientTls, ClientTlsOptions, Roots};
use peers::{Pki, TlsServe, VsftpdTls, random_bytes, sha256};
use std::fs::File;

fn config(mode: TlsMode, roots: Roots) -> ClientConfig {
    let mut o = ClientTlsOptions::default();
    o.roots = roots;
    let mut c = ClientConfig::default();
    c.tls = mode;
    c.tls_config = Some(ClientTls::new(&o).unwrap());
    c.busy_retry = std::time::Duration::ZERO;
    c
}

fn trusting(pki: &Pki, mode: TlsMode) -> ClientConfig {
    config(mode, Roots::File(pki.ca.clone()))
}

fn login(v: &VsftpdTls, host: &str, config: ClientConfig) -> Result<Client, Error> {
    let mut c = Client::connect_host(host, v.port, config)?;
    c.login(&v.user.name, &v.user.password)?;
    Ok(c)
}

fn read(f: &File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut f = f.try_clone().unwrap();
    f.rewind().unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Download, resumed download, upload, resumed upload, append and listings: every data
/// connection is TLS and resumes the control session (vsftpd refuses it otherwise).
fn round_trip(v: &VsftpdTls, c: &mut Client, tag: u64) {
    assert!(c.is_tls() && c.data_protected(), "{c:?}");
    assert!(!c.sent_password_in_clear());
    let data = random_bytes(2 * 1024 * 1024 + 4099, tag);
    v.put("src.bin", &data);
    let out = tempfile::tempfile().unwrap();
    let r = c
        .get("src.bin", &out, 0, 0)
        .unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    assert_eq!(r.bytes, data.len() as u64);
    assert_eq!(sha256(&read(&out)), sha256(&data));

    // Resume: the first part is here already, REST fetches the rest.
    let split = 777_777;
    let part = tempfile::tempfile().unwrap();
    gridos_io::file_write(&part, 0, &data[..split]).unwrap();
    let r = c.get("src.bin", &part, split as u64, split as u64).unwrap();
    assert_eq!(r.bytes, (data.len() - split) as u64);
    assert_eq!(sha256(&read(&part)), sha256(&data));

    // Upload whole, then in two parts (REST + STOR), then appended.
    let src = tempfile::tempfile().unwrap();
    gridos_io::file_write(&src, 0, &data).unwrap();
    let n = data.len() as u64;
    c.put(&src, 0, n, "up.bin", PutMode::Store).unwrap();
    let up = std::fs::read(v.home.join("up.bin")).unwrap();
    assert_eq!(sha256(&up), sha256(&data));
    c.put(&src, 0, split as u64, "two.bin", PutMode::Store)
        .unwrap();
    c.put(
        &src,
        split as u64,
        n - split as u64,
        "two.bin",
        PutMode::Restart(split as u64),
    )
    .unwrap();
    assert_eq!(
        sha256(&std::fs::read(v.home.join("two.bin")).unwrap()),
        sha256(&data)
    );
    c.put(&src, 0, 10, "app.bin", PutMode::Store).unwrap();
    c.put(&src, 10, n - 10, "app.bin", PutMode::Append).unwrap();
    assert_eq!(
        sha256(&std::fs::read(v.home.join("app.bin")).unwrap()),
        sha256(&data)
    );
    // Listings over TLS too, after uploads (whose tickets were read back).
    let mut names: Vec<String> = c.list(None).unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["app.bin", "src.bin", "two.bin", "up.bin"]);
    let mut nl = c.nlst(None).unwrap();
    nl.sort();
    assert_eq!(nl, names);
    // More data connections than one session's tickets: each resumes.
    for _ in 0..6 {
        let out = tempfile::tempfile().unwrap();
        c.put(&src, 0, 1000, "small.bin", PutMode::Store).unwrap();
        c.get("small.bin", &out, 0, 0).unwrap();
        assert_eq!(read(&out), data[..1000]);
    }
    for n in ["app.bin", "src.bin", "two.bin", "up.bin", "small.bin"] {
        c.delete(n).unwrap();
    }
}

#[test]
fn explicit_tls_passive_and_active() {
    let pki = Pki::generate();
    let Some(v) = VsftpdTls::start(TlsServe::Explicit, &pki.good) else {
        return;
    };
    let mut c = login(&v, "127.0.0.1", trusting(&pki, TlsMode::Explicit))
        .unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    round_trip(&v, &mut c, 1);
    c.quit().unwrap();

    // Active mode: vsftpd connects to us, and we are still the TLS client.
    let mut cfg = trusting(&pki, TlsMode::Explicit);
    cfg.active = true;
    // By host name: the certificate names localhost too.
    let mut c = login(&v, "localhost", cfg).unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    assert_eq!(c.server_name(), "localhost");
    round_trip(&v, &mut c, 2);
    c.quit().unwrap();
}

#[test]
fn implicit_tls() {
    let pki = Pki::generate();
    let Some(v) = VsftpdTls::start(TlsServe::Implicit, &pki.good) else {
        return;
    };
    let mut c = login(&v, "127.0.0.1", trusting(&pki, TlsMode::Implicit))
        .unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    round_trip(&v, &mut c, 3);
    c.quit().unwrap();
}

#[test]
fn auto_upgrades_before_the_password_and_warns_without_tls() {
    let pki = Pki::generate();
    let Some(v) = VsftpdTls::start(TlsServe::Explicit, &pki.good) else {
        return;
    };
    // FEAT announces it before the login.
    let mut plain = Client::connect(v.addr(), config(TlsMode::Never, Roots::System)).unwrap();
    assert!(plain.feat().unwrap().auth_tls);
    drop(plain);
    // vsftpd forces TLS for this login: without the upgrade it would answer 530.
    let mut c = login(&v, "127.0.0.1", trusting(&pki, TlsMode::Auto))
        .unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    assert!(c.is_tls() && c.data_protected() && !c.sent_password_in_clear());
    let out = tempfile::tempfile().unwrap();
    v.put("a.txt", b"over TLS\n");
    c.get("a.txt", &out, 0, 0).unwrap();
    assert_eq!(read(&out), b"over TLS\n");
    drop(c);
    drop(v);

    // A server without TLS: the password goes in clear, and the client says so.
    let Some(v) = VsftpdTls::start(TlsServe::Off, &pki.good) else {
        return;
    };
    let mut c = login(&v, "127.0.0.1", trusting(&pki, TlsMode::Auto)).unwrap();
    assert!(!c.is_tls() && !c.data_protected() && c.sent_password_in_clear());
    v.put("b.txt", b"in clear\n");
    let out = tempfile::tempfile().unwrap();
    c.get("b.txt", &out, 0, 0).unwrap();
    assert_eq!(read(&out), b"in clear\n");

    // Required TLS against it: a typed error naming the refused AUTH TLS.
    let e = login(&v, "127.0.0.1", trusting(&pki, TlsMode::Explicit)).unwrap_err();
    assert!(
        matches!(&e, Error::TlsUnavailable { command, .. } if command == "AUTH TLS"),
        "{e:?}"
    );
    assert!(e.to_string().contains("does not offer TLS"), "{e}");
}

/// The handshake's error for `cert` served and checked with `roots` (as `host`).
fn refused(
    serve: TlsServe,
    cert: &(std::path::PathBuf, std::path::PathBuf),
    roots: Roots,
    host: &str,
) -> Option<Error> {
    let mode = match serve {
        TlsServe::Implicit => TlsMode::Implicit,
        _ => TlsMode::Explicit,
    };
    let v = VsftpdTls::start(serve, cert)?;
    Some(login(&v, host, config(mode, roots)).expect_err("the certificate should be refused"))
}

fn reason(e: &Error) -> String {
    let tls = e.tls().unwrap_or_else(|| panic!("not a TLS error: {e:?}"));
    assert!(
        matches!(
            e,
            Error::Tls {
                connection: "control",
                ..
            }
        ),
        "{e:?}"
    );
    tls.reason()
        .unwrap_or_else(|| panic!("no certificate reason: {tls:?}"))
}

#[test]
fn bad_certificates_fail_with_their_reason() {
    let pki = Pki::generate();
    let ca = || Roots::File(pki.ca.clone());
    // The system's roots do not know the test CA.
    let Some(e) = refused(TlsServe::Explicit, &pki.good, Roots::System, "127.0.0.1") else {
        return;
    };
    assert!(reason(&e).contains("unknown issuer"), "{e}");
    assert!(e.to_string().contains("unknown issuer"), "{e}");
    let Some(e) = refused(TlsServe::Explicit, &pki.untrusted, ca(), "127.0.0.1") else {
        return;
    };
    assert!(reason(&e).contains("unknown issuer"), "{e}");
    let Some(e) = refused(TlsServe::Explicit, &pki.wrong_name, ca(), "127.0.0.1") else {
        return;
    };
    assert!(reason(&e).contains("not valid for this host name"), "{e}");
    let Some(e) = refused(TlsServe::Implicit, &pki.expired, ca(), "localhost") else {
        return;
    };
    assert!(reason(&e).contains("expired"), "{e}");
}

#[test]
fn insecure_skips_verification_but_still_encrypts() {
    let pki = Pki::generate();
    let Some(v) = VsftpdTls::start(TlsServe::Explicit, &pki.untrusted) else {
        return;
    };
    let cfg = config(TlsMode::Explicit, Roots::Insecure);
    assert!(cfg.tls_config.as_ref().unwrap().is_insecure());
    let mut c = login(&v, "127.0.0.1", cfg).unwrap_or_else(|e| panic!("{e}\n{}", v.log()));
    assert!(c.data_protected());
    let data = random_bytes(300_000, 9);
    v.put("x.bin", &data);
    let out = tempfile::tempfile().unwrap();
    c.get("x.bin", &out, 0, 0).unwrap();
    assert_eq!(sha256(&read(&out)), sha256(&data));
}
