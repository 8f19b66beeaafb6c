//! `gridos cp` between two servers: the data goes directly from one server to the other
//! (the client only on the control connections) when the servers allow it, and through this
//! machine, said so, when they refuse. Servers listen on distinct loopback addresses
//! (127.0.0.2, 127.0.0.3) so that a data connection between them really comes from an
//! address other than the client's (127.0.0.1). Bytes checked by SHA-256.

mod util;

use util::{Globus, Ours, gridos, make_tree, random_bytes, sha256, sha256_file, tree};

/// Our server on `ip` (anonymous read-write, plus alice).
fn on(ip: [u8; 4]) -> Ours {
    Ours::start(|c| c.listen = std::net::SocketAddr::from((ip, 0)))
}

#[test]
fn direct_between_two_of_our_servers_for_authenticated_users() {
    let (a, b) = (on([127, 0, 0, 2]), on([127, 0, 0, 3]));
    let data = random_bytes(9_000_007, 1);
    std::fs::write(a.root.join("src.bin"), &data).unwrap();

    // Both offer MODE E (SPAS/SPOR): one stream chosen from the path, then four asked for,
    // with both servers' checksums compared.
    for (args, name) in [
        (vec![], "s1.bin"),
        (vec!["-p", "4", "--verify=SHA256"], "s4.bin"),
    ] {
        let (src, dst) = (a.user_url("src.bin"), b.user_url(name));
        let mut cmd = vec!["cp", "--json", "--no-relay"];
        cmd.extend(args);
        cmd.extend([src.as_str(), dst.as_str()]);
        let j = gridos(&cmd).ok();
        assert_eq!(j["third_party"], true, "{j}");
        assert_eq!(j["bytes"], data.len() as u64);
        assert!(
            j["control_round_trips"].as_u64().is_some_and(|n| n > 0),
            "{j}"
        );
        assert_eq!(sha256_file(&b.root.join(name)), sha256(&data), "{name}");
    }

    // A tree: every file server to server.
    let t = a.root.join("t");
    make_tree(&t);
    let j = gridos(&["cp", "-r", "--json", &a.user_url("t"), &b.user_url("t2")]).ok();
    assert_eq!(j["third_party"], true, "{j}");
    assert_eq!(tree(&b.root.join("t2")), tree(&t));
}

#[test]
fn anonymous_third_party_is_refused_then_relayed_or_an_error() {
    let (a, b) = (on([127, 0, 0, 2]), on([127, 0, 0, 3]));
    let data = random_bytes(3_000_001, 2);
    std::fs::write(a.root.join("src.bin"), &data).unwrap();
    let (src, dst) = (a.url("src.bin"), b.url("dst.bin"));

    // Bounce protection holds for anonymous users: no direct transfer, and --no-relay
    // makes that an error that names the refusal; nothing is left at the destination.
    let out = gridos(&["cp", "--no-relay", &src, &dst]);
    let err = out.fails();
    assert!(
        err.contains("refused") && err.contains("--no-relay"),
        "{err}"
    );
    assert!(!b.root.join("dst.bin").exists());

    // By default the copy relays through this machine and says why.
    let out = gridos(&["cp", "--json", &src, &dst]);
    let j = out.ok();
    assert_eq!(j["third_party"], false, "{j}");
    assert!(j["reason"].as_str().is_some_and(|r| !r.is_empty()), "{j}");
    assert!(out.stderr.contains("relaying"), "no notice of the relay");
    assert_eq!(sha256_file(&b.root.join("dst.bin")), sha256(&data));

    // A tree: refused once, then every file relayed.
    let t = a.root.join("t");
    make_tree(&t);
    let out = gridos(&["cp", "-r", "--json", &a.url("t"), &b.url("t2")]);
    let j = out.ok();
    assert_eq!(j["third_party"], false, "{j}");
    assert_eq!(tree(&b.root.join("t2")), tree(&t));
    let notices = out.stderr.matches("relaying").count();
    assert_eq!(notices, 1, "one refusal, one notice: {}", out.stderr);
}

#[test]
fn trusted_hosts_let_anonymous_transfers_go_direct() {
    let trust = |c: &mut gridos_ftp::server::ServerConfig| {
        c.set("third_party_hosts", "127.0.0.2,127.0.0.3").unwrap()
    };
    let a = Ours::start(|c| {
        c.listen = std::net::SocketAddr::from(([127, 0, 0, 2], 0));
        trust(c);
    });
    let b = Ours::start(|c| {
        c.listen = std::net::SocketAddr::from(([127, 0, 0, 3], 0));
        trust(c);
    });
    let data = random_bytes(2_000_003, 3);
    std::fs::write(a.root.join("src.bin"), &data).unwrap();
    let j = gridos(&[
        "cp",
        "--json",
        "--no-relay",
        &a.url("src.bin"),
        &b.url("dst.bin"),
    ])
    .ok();
    assert_eq!(j["third_party"], true, "{j}");
    assert_eq!(sha256_file(&b.root.join("dst.bin")), sha256(&data));
}

/// `gridos cp` drives copies between our server and globus-gridftp-server, both ways, in
/// MODE E: two streams with both servers' checksums compared, then the plan chosen from the
/// path.
#[test]
fn direct_between_our_server_and_globus_both_ways() {
    let Some(g) = Globus::start() else {
        return;
    };
    let ours = on([127, 0, 0, 2]);
    let data = random_bytes(6_000_011, 4);
    std::fs::write(ours.root.join("ours.bin"), &data).unwrap();
    g.put(&g.home.join("theirs.bin"), &data);
    for (i, extra) in [vec!["-p", "2", "--verify=MD5"], vec![]]
        .into_iter()
        .enumerate()
    {
        // gridftp:// paths are absolute; the globus user's home is g.home.
        let up = g.home_url("gridftp", &format!("up{i}.bin"));
        let down = ours.user_url(&format!("down{i}.bin"));
        for (src, dst, landed) in [
            (
                ours.user_url("ours.bin"),
                up.clone(),
                g.home.join(format!("up{i}.bin")),
            ),
            (
                g.url("ftp", "theirs.bin"),
                down.clone(),
                ours.root.join(format!("down{i}.bin")),
            ),
        ] {
            let mut args = vec!["cp", "--json", "--no-relay"];
            args.extend(extra.iter().copied());
            args.extend([src.as_str(), dst.as_str()]);
            let j = gridos(&args).ok();
            assert_eq!(j["third_party"], true, "{src} → {dst}: {j}");
            assert_eq!(sha256_file(&landed), sha256(&data), "{src} → {dst}");
        }
    }
}

/// `--preserve` keeps the modification time on a server-to-server copy too (MFMT on the
/// destination).
#[test]
fn preserve_times_server_to_server() {
    let (a, b) = (on([127, 0, 0, 2]), on([127, 0, 0, 3]));
    let src = a.root.join("old.bin");
    std::fs::write(&src, random_bytes(100_000, 9)).unwrap();
    let t2001 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(t2001)
        .unwrap();
    let j = gridos(&[
        "cp",
        "--json",
        "--preserve",
        &a.user_url("old.bin"),
        &b.user_url("new.bin"),
    ])
    .ok();
    assert_eq!(j["third_party"], true, "{j}");
    let got = std::fs::metadata(b.root.join("new.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(got, t2001);
}
