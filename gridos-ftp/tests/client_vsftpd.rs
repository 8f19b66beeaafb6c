//! Our client against a real vsftpd on loopback: every byte checked by SHA-256.

#[path = "client_peers.rs"]
mod peers;

use gridos_ftp::client::{Client, ClientConfig, EntryKind, Error, PutMode};
use peers::{Vsftpd, random_bytes, sha256};
use std::fs::File;

fn connect(v: &Vsftpd, config: ClientConfig) -> Client {
    let mut c = Client::connect(v.addr(), config).unwrap();
    c.login_anonymous().unwrap();
    c
}

fn read(f: &File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut f = f.try_clone().unwrap();
    f.rewind().unwrap();
    let mut v = Vec::new();
    f.read_to_end(&mut v).unwrap();
    v
}

#[test]
fn client_vsftpd_get_put_resume_and_namespace() {
    let Some(v) = Vsftpd::start("127.0.0.1") else {
        return;
    };
    let data = random_bytes(3 * 1024 * 1024 + 17, 1);
    std::fs::write(v.root.join("big.bin"), &data).unwrap();
    let mut c = connect(&v, ClientConfig::default());
    let f = c.features().clone();
    assert!(f.size && f.rest_stream && f.epsv && f.mdtm, "{f:?}");
    assert!(!f.mlst, "vsftpd has no MLST: the LIST path is tested here");

    // Whole file.
    let out = tempfile::tempfile().unwrap();
    let r = c.get("/big.bin", &out, 0, 0).unwrap();
    assert_eq!(r.bytes, data.len() as u64);
    assert_eq!(sha256(&read(&out)), sha256(&data));

    // Resume: first part by a local copy, the rest from an offset with REST.
    let split = 1_000_003;
    let part = tempfile::tempfile().unwrap();
    gridos_io::file_write(&part, 0, &data[..split]).unwrap();
    let r = c
        .get("/big.bin", &part, split as u64, split as u64)
        .unwrap();
    assert_eq!(r.bytes, (data.len() - split) as u64);
    assert_eq!(sha256(&read(&part)), sha256(&data));

    // Upload, then upload in two parts with REST+STOR, and again with APPE.
    let src = tempfile::tempfile().unwrap();
    gridos_io::file_write(&src, 0, &data).unwrap();
    let n = data.len() as u64;
    c.put(&src, 0, n, "/pub/up.bin", PutMode::Store).unwrap();
    assert_eq!(
        sha256(&std::fs::read(v.pub_dir.join("up.bin")).unwrap()),
        sha256(&data)
    );
    c.put(&src, 0, split as u64, "/pub/resumed.bin", PutMode::Store)
        .unwrap();
    assert_eq!(c.size("/pub/resumed.bin").unwrap(), split as u64);
    c.put(
        &src,
        split as u64,
        n - split as u64,
        "/pub/resumed.bin",
        PutMode::Restart(split as u64),
    )
    .unwrap();
    assert_eq!(
        sha256(&std::fs::read(v.pub_dir.join("resumed.bin")).unwrap()),
        sha256(&data)
    );
    c.put(&src, 0, 5, "/pub/appended.bin", PutMode::Store)
        .unwrap();
    c.put(&src, 5, n - 5, "/pub/appended.bin", PutMode::Append)
        .unwrap();
    assert_eq!(
        sha256(&std::fs::read(v.pub_dir.join("appended.bin")).unwrap()),
        sha256(&data)
    );

    // Namespace operations.
    c.mkdir("/pub/dir with space").unwrap();
    c.rename("/pub/up.bin", "/pub/dir with space/moved.bin")
        .unwrap();
    assert!(v.pub_dir.join("dir with space/moved.bin").is_file());
    assert_eq!(c.size("/pub/dir with space/moved.bin").unwrap(), n);
    let t = c.mdtm("/big.bin").unwrap();
    assert!(t.elapsed().unwrap().as_secs() < 3600);
    let entries = c.list(Some("/pub")).unwrap();
    let dir = entries.iter().find(|e| e.name == "dir with space").unwrap();
    assert_eq!(dir.kind, EntryKind::Dir);
    let res = entries.iter().find(|e| e.name == "resumed.bin").unwrap();
    assert_eq!((res.kind, res.size), (EntryKind::File, Some(n)));
    let mut names = c.nlst(Some("/pub/dir with space")).unwrap();
    names.iter_mut().for_each(|n| {
        *n = n.rsplit('/').next().unwrap().to_string();
    });
    assert_eq!(names, ["moved.bin"]);
    let st = c.stat("/pub/dir with space").unwrap().unwrap();
    assert_eq!(st.kind, EntryKind::Dir);
    let st = c.stat("/big.bin").unwrap().unwrap();
    assert_eq!((st.kind, st.size), (EntryKind::File, Some(n)));
    assert!(c.stat("/no/such").unwrap().is_none());
    c.delete("/pub/dir with space/moved.bin").unwrap();
    c.rmdir("/pub/dir with space").unwrap();
    assert!(!v.pub_dir.join("dir with space").exists());

    // Refusals carry the server's code; the connection stays usable.
    let e = c.get("/missing.bin", &out, 0, 0).unwrap_err();
    assert_eq!(e.reply_code(), Some(550), "{e}");
    let e = c.delete("/big.bin").unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(matches!(
        c.get("/a\r\nDELE /big.bin", &out, 0, 0),
        Err(Error::InvalidArgument(_))
    ));
    c.noop().unwrap();
    c.quit().unwrap();
}

#[test]
fn client_vsftpd_pasv_fallback_ignores_advertised_address() {
    // vsftpd advertises 127.3.2.1 in its 227 replies; nothing listens there, so following it
    // would fail. The client must use the control connection's peer address.
    let Some(v) = Vsftpd::start("127.3.2.1") else {
        return;
    };
    let data = random_bytes(777_777, 2);
    std::fs::write(v.root.join("f.bin"), &data).unwrap();
    let mut config = ClientConfig::default();
    config.use_epsv = false;
    let mut c = connect(&v, config);
    let out = tempfile::tempfile().unwrap();
    c.get("/f.bin", &out, 0, 0).unwrap();
    assert_eq!(sha256(&read(&out)), sha256(&data));
    let src = tempfile::tempfile().unwrap();
    gridos_io::file_write(&src, 0, &data).unwrap();
    c.put(&src, 0, data.len() as u64, "/pub/g.bin", PutMode::Store)
        .unwrap();
    assert_eq!(
        sha256(&std::fs::read(v.pub_dir.join("g.bin")).unwrap()),
        sha256(&data)
    );
    assert_eq!(c.list(Some("/")).unwrap().len(), 2);
}
