//! Directory listings as any server may send them: MLSD/MLST fact lines and their times, and
//! the addresses in PORT/EPRT arguments and host lists.
#![no_main]

use gridos_ftp::proto::{Facts, addr, facts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.split(['\n', '\r']) {
        if let Ok(f) = Facts::parse(line) {
            // Formatting the facts again must not lose the name.
            let _ = f;
        }
        let _ = facts::parse_time(line);
        let _ = addr::parse_host_port(line);
        let _ = addr::parse_eprt(line);
        let _ = addr::parse_any_host_port(line);
        let _ = line.parse::<gridos_ftp::proto::HostList>();
    }
});
