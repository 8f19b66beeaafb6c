//! What a node daemon reads from the network: gridos-comm frame bodies and the gridos-pm
//! control envelopes inside them (requests from clients and peers, responses from peers).
#![no_main]

use gridos_comm::frame::Frame;
use gridos_pm::proto::{Request, Response, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode_body(data) {
        // A decoded frame encodes back to the same body after its length prefix.
        let bytes = f.encode().expect("a decoded frame encodes");
        assert_eq!(Frame::decode_body(&bytes[4..]).as_ref().ok(), Some(&f));
    }
    let _ = decode::<Request>(data);
    let _ = decode::<Response>(data);
});
