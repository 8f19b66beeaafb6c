//! Certificates for the FTPS tests, made in the test with rcgen (`mod tls_fixtures;`): a
//! CA, a server certificate for 127.0.0.1 and localhost, wrong-name, expired and untrusted
//! variants, client certificates with grid subjects (`/C=XX/O=Grid/CN=Jane Doe`), and
//! grid-mapfiles. Everything is written as PEM files into a temporary directory that lives
//! as long as the [`Pki`]. Compiled alone it checks the files against rustls (through
//! gridos-ftp's `tls` module, which is not the code under test here).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A certificate (chain: the certificate alone) and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// The subject in grid-mapfile form (`/C=XX/O=Grid/CN=Jane Doe`).
    pub subject: String,
}

/// A test CA with its certificates, all in one temporary directory.
pub struct Pki {
    /// The CA certificate (PEM): what `--cacert`, `ssl:ca-file` and `cafile=` take.
    pub ca: PathBuf,
    /// The server certificate for 127.0.0.1 and localhost, signed by the CA.
    pub server: CertFiles,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
    name: String,
}

/// The parts of a subject, in order, as (type, value).
type Dn<'a> = &'a [(rcgen::DnType, &'a str)];

fn dn_of(parts: Dn<'_>) -> (rcgen::DistinguishedName, String) {
    let mut dn = rcgen::DistinguishedName::new();
    let mut grid = String::new();
    for (t, v) in parts {
        dn.push(t.clone(), *v);
        let short = match t {
            rcgen::DnType::CountryName => "C",
            rcgen::DnType::OrganizationName => "O",
            rcgen::DnType::OrganizationalUnitName => "OU",
            rcgen::DnType::CommonName => "CN",
            rcgen::DnType::LocalityName => "L",
            rcgen::DnType::StateOrProvinceName => "ST",
            other => panic!("no grid-mapfile name for {other:?}"),
        };
        grid += &format!("/{short}={v}");
    }
    (dn, grid)
}

impl Pki {
    /// A new CA (`CN=gridos test CA NAME`) and its server certificate for 127.0.0.1 and
    /// localhost.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("gridos-pki-")
            .tempdir()
            .unwrap();
        // Servers that drop privileges (vsftpd, proftpd) read the files as root before
        // they do; the directory need not be world-readable, but it does no harm to the
        // tests that it is.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        (params.distinguished_name, _) = dn_of(&[
            (rcgen::DnType::OrganizationName, "Grid"),
            (rcgen::DnType::CommonName, &format!("gridos test CA {name}")),
        ]);
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let mut pki = Pki {
            ca,
            server: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
                subject: String::new(),
            },
            issuer,
            dir,
            name: name.into(),
        };
        pki.server = pki.server_cert("server", &["127.0.0.1", "localhost"], false);
        pki
    }

    /// The directory the files are in (for more files of a test).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `names` (IP addresses or DNS names), expired since 2001
    /// when `expired`: the wrong-name and expired variants.
    pub fn server_cert(&self, file: &str, names: &[&str], expired: bool) -> CertFiles {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let (dn, subject) = dn_of(&[
            (rcgen::DnType::OrganizationName, "Grid"),
            (
                rcgen::DnType::CommonName,
                names.first().copied().unwrap_or("server"),
            ),
        ]);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        self.sign(file, params, subject)
    }

    /// A client certificate with the subject `dn` (in this order), e.g.
    /// `[(CountryName, "XX"), (OrganizationName, "Grid"), (CommonName, "Jane Doe")]`.
    pub fn client_cert(&self, file: &str, dn: Dn<'_>) -> CertFiles {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let (dn, subject) = dn_of(dn);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(file, params, subject)
    }

    /// A client certificate `/C=XX/O=Grid/CN={cn}`.
    pub fn grid_user(&self, file: &str, cn: &str) -> CertFiles {
        self.client_cert(
            file,
            &[
                (rcgen::DnType::CountryName, "XX"),
                (rcgen::DnType::OrganizationName, "Grid"),
                (rcgen::DnType::CommonName, cn),
            ],
        )
    }

    fn sign(&self, file: &str, params: rcgen::CertificateParams, subject: String) -> CertFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertFiles {
            cert: self.dir.path().join(format!("{}-{file}.pem", self.name)),
            key: self.dir.path().join(format!("{}-{file}.key", self.name)),
            subject,
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// Writes a grid-mapfile (`"SUBJECT" user`, one line each, quoted: subjects hold
    /// spaces) and returns its path.
    pub fn grid_mapfile(&self, file: &str, entries: &[(&str, &str)]) -> PathBuf {
        let path = self.dir.path().join(file);
        let mut text = String::from("# written by a gridos test\n");
        for (subject, user) in entries {
            text += &format!("\"{subject}\" {user}\n");
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[cfg(test)]
mod check {
    use super::*;
    use gridos_ftp::tls::{ClientTls, ClientTlsOptions, Roots, ServerTls, load_certs, subject_of};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// One handshake of a client trusting `ca` with a server presenting `cert`, for `host`.
    fn handshake(cert: &CertFiles, ca: &Path, host: &str) -> Result<(), String> {
        let server = ServerTls::from_pem_files(&cert.cert, &cert.key, None).unwrap();
        let sess = server.session();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = Duration::from_secs(5);
        let srv = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            if let Ok(mut d) = sess.accept_data(s, false, t) {
                let mut b = [0u8; 2];
                if d.read_exact(&mut b).is_ok() {
                    let _ = d.write_all(&b);
                    let _ = d.finish();
                }
            }
        });
        let mut options = ClientTlsOptions::default();
        options.roots = Roots::File(ca.to_path_buf());
        let client = ClientTls::new(&options).unwrap();
        let r = client
            .connect(host, TcpStream::connect(addr).unwrap(), t)
            .map_err(|e| e.to_string())
            .and_then(|mut d| {
                d.write_all(b"ok").map_err(|e| e.to_string())?;
                let mut back = Vec::new();
                d.read_to_end(&mut back).map_err(|e| e.to_string())?;
                (back == b"ok")
                    .then_some(())
                    .ok_or("echo differs".to_string())
            });
        srv.join().unwrap();
        r
    }

    #[test]
    fn fixtures_check_themselves() {
        let pki = Pki::new("check");
        handshake(&pki.server, &pki.ca, "127.0.0.1").unwrap();
        handshake(&pki.server, &pki.ca, "localhost").unwrap();
        let wrong = pki.server_cert("wrong", &["elsewhere.invalid"], false);
        let e = handshake(&wrong, &pki.ca, "127.0.0.1").unwrap_err();
        assert!(e.contains("not valid for this host name"), "{e}");
        let expired = pki.server_cert("expired", &["127.0.0.1"], true);
        let e = handshake(&expired, &pki.ca, "127.0.0.1").unwrap_err();
        assert!(e.contains("expired"), "{e}");
        let other = Pki::new("other");
        let e = handshake(&other.server, &pki.ca, "127.0.0.1").unwrap_err();
        assert!(e.contains("unknown issuer"), "{e}");

        let jane = pki.grid_user("jane", "Jane Doe");
        assert_eq!(jane.subject, "/C=XX/O=Grid/CN=Jane Doe");
        let der = load_certs(&jane.cert).unwrap();
        assert_eq!(subject_of(&der[0]).unwrap(), jane.subject);
        let map = pki.grid_mapfile("grid-mapfile", &[(&jane.subject, "alice")]);
        let m = gridos_ftp::tls::GridMap::load(&map).unwrap();
        assert_eq!(m.login(&jane.subject, ":globus-mapping:"), Some("alice"));
    }
}
