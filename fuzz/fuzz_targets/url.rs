//! URLs as users type them: the middleware's one URL parser. A parsed URL's text form parses
//! back to the same URL.
#![no_main]

use gridos_middleware::Url;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = Url::parse(text) {
        let shown = u.to_string();
        if let Ok(again) = Url::parse(&shown) {
            assert_eq!(again.to_string(), shown);
        }
    }
});
