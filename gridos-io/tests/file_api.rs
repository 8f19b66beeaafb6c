//! The file API: byte-exact copies (empty, tiny, odd, sparse, multi-GiB) at offsets.

mod common;
use common::*;
use gridos_io::{Error, copy_path, file_copy, file_read, file_write};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};

fn copy_and_check(data: &[u8], src_off: u64, len: Option<u64>, dst_off: u64) {
    let src = file_with(data);
    let mut dst = tempfile::tempfile().unwrap();
    let r = file_copy(&src, src_off, &dst, dst_off, len).unwrap();
    let len = len.unwrap_or(data.len() as u64 - src_off);
    assert_eq!(r.bytes, len);
    assert_eq!(dst.metadata().unwrap().len(), dst_off + len);
    let want = &data[src_off as usize..(src_off + len) as usize];
    assert_eq!(file_sha(&mut dst, dst_off, len), sha(want));
}

#[test]
fn copies_empty_tiny_odd_and_offset_ranges() {
    copy_and_check(&[], 0, None, 0);
    copy_and_check(b"x", 0, None, 0);
    copy_and_check(b"x", 0, Some(1), 4096);
    let odd = pattern(1_234_567, 11);
    copy_and_check(&odd, 0, None, 0);
    copy_and_check(&odd, 999, Some(500_001), 3);
    copy_and_check(&odd, 1_234_567, None, 0);
}

#[test]
fn read_and_write_at_offsets() {
    let f = tempfile::tempfile().unwrap();
    file_write(&f, 10, b"grid").unwrap();
    let mut buf = [0u8; 20];
    assert_eq!(file_read(&f, 0, &mut buf).unwrap(), 14);
    assert_eq!(&buf[..14], b"\0\0\0\0\0\0\0\0\0\0grid");
    assert_eq!(file_read(&f, 100, &mut buf).unwrap(), 0);
}

#[test]
fn sparse_multi_gib_copy_keeps_holes_and_bytes() {
    // 5 GiB logical size, a few data islands, including one across the 4 GiB boundary.
    let size: u64 = 5 << 30;
    let src = tempfile::tempfile().unwrap();
    src.set_len(size).unwrap();
    let islands = [
        (0u64, 4096usize),
        (1 << 30, 100_000),
        ((4 << 30) - 5000, 10_000),
        (size - 1, 1),
    ];
    for (i, &(at, n)) in islands.iter().enumerate() {
        src.write_all_at(&pattern(n, 20 + i as u64), at).unwrap();
    }
    let dst = tempfile::tempfile().unwrap();
    let r = file_copy(&src, 0, &dst, 0, None).unwrap();
    assert_eq!(r.bytes, size);
    assert!(
        r.data_bytes < 64 << 20,
        "holes were copied as data: {}",
        r.data_bytes
    );
    assert_eq!(dst.metadata().unwrap().len(), size);
    assert!(
        dst.metadata().unwrap().blocks() * 512 < 64 << 20,
        "destination is not sparse"
    );
    for (i, &(at, n)) in islands.iter().enumerate() {
        let mut got = vec![0u8; n];
        dst.read_exact_at(&mut got, at).unwrap();
        assert_eq!(got, pattern(n, 20 + i as u64), "island {i}");
    }
    // Zeros between islands, sampled across the whole file.
    let mut probe = vec![0u8; 4096];
    for at in [8192u64, 512 << 20, 3 << 30, (4 << 30) + 4096 * 4] {
        dst.read_exact_at(&mut probe, at).unwrap();
        assert!(probe.iter().all(|&b| b == 0), "hole at {at} holds data");
    }
    // A range in the middle of the sparse file, to an offset.
    let dst2 = tempfile::tempfile().unwrap();
    file_copy(&src, (4 << 30) - 6000, &dst2, 7, Some(12_000)).unwrap();
    let mut got = vec![0u8; 12_000];
    dst2.read_exact_at(&mut got, 7).unwrap();
    assert!(got[..1000].iter().all(|&b| b == 0));
    assert_eq!(&got[1000..11_000], &pattern(10_000, 22)[..]);
}

#[test]
fn copy_across_file_systems_falls_back_and_stays_exact() {
    // /dev/shm is tmpfs; the temp dir is usually another file system.
    let data = pattern(3_000_001, 12);
    let shm = tempfile::tempfile_in("/dev/shm").unwrap();
    shm.write_all_at(&data, 0).unwrap();
    let mut dst = tempfile::tempfile().unwrap();
    file_copy(&shm, 0, &dst, 0, None).unwrap();
    assert_eq!(file_sha(&mut dst, 0, data.len() as u64), sha(&data));
}

#[test]
fn bad_ranges_and_missing_files_are_typed_errors() {
    let src = file_with(b"0123456789");
    let dst = tempfile::tempfile().unwrap();
    assert!(matches!(
        file_copy(&src, 11, &dst, 0, None),
        Err(Error::OffsetPastEof { .. })
    ));
    assert!(matches!(
        file_copy(&src, 5, &dst, 0, Some(6)),
        Err(Error::OffsetPastEof { .. })
    ));
    assert!(matches!(
        file_copy(&src, u64::MAX, &dst, 0, Some(2)),
        Err(Error::OffsetPastEof { .. })
    ));
    assert_eq!(
        dst.metadata().unwrap().len(),
        0,
        "nothing written on a refused range"
    );
    let dir = tempfile::tempdir().unwrap();
    let err = copy_path(&dir.path().join("missing"), &dir.path().join("out")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        copy_path(dir.path(), &dir.path().join("out")).is_err(),
        "a directory is not a file"
    );
    assert!(!dir.path().join("out").exists());
}

#[test]
fn copy_path_replaces_atomically_and_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let data = pattern(777_777, 13);
    std::fs::write(&a, &data).unwrap();
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(&b, b"old contents").unwrap();
    copy_path(&a, &b).unwrap();
    assert_eq!(std::fs::read(&b).unwrap(), data);
    assert_eq!(
        std::fs::metadata(&b).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "temporary file left behind: {leftovers:?}"
    );
    // A destination in a missing directory fails cleanly.
    assert!(copy_path(&a, &dir.path().join("nope/b")).is_err());
    let _: File = OpenOptions::new().read(true).open(&b).unwrap();
}

#[test]
fn copy_path_to_a_device_writes_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    std::fs::write(&a, pattern(70_000, 14)).unwrap();
    let r = copy_path(&a, std::path::Path::new("/dev/null")).unwrap();
    assert_eq!(r.bytes, 70_000);
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}
