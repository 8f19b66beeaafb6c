//! A plain `cargo build` gives `libgridos.so` the soname `libgridos.so.MAJOR`, as cargo-c
//! does for `cargo cinstall` (which sets it itself, with the `capi` feature on).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CAPI").is_some() {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    // cargo-c's rule: 0.y versions break the ABI with y, later ones with the major.
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libgridos.so.{abi}");
    }
}
