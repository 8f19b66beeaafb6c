//! Operator-written files: the server's TOML configuration (`[ftp]` keys and the `[io]`
//! table), password files and grid-mapfiles. Bad text must give an error, never a panic.
#![no_main]

use gridos_ftp::server::{PasswordFile, ServerConfig};
use gridos_ftp::tls::GridMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut c = ServerConfig::new("/srv");
    // `[io]` would change the process-wide I/O configuration: check it without applying.
    if text.contains("[io]") {
        let _ = gridos_io::IoConfig::from_toml(text);
    } else {
        let _ = c.apply_toml(text);
    }
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let _ = c.set(k.trim(), v);
        }
    }
    let _ = PasswordFile::parse(text);
    if let Ok(m) = GridMap::parse(text) {
        for line in text.lines() {
            let _ = m.login(line, ":globus-mapping:");
        }
    }
});
