//! # libgridos-ffi — the C library
//!
//! Not implemented yet. This crate will build `libgridos` (cdylib and staticlib) with a
//! committed cbindgen header `include/gridos.h`: opaque handles, `gridos_<type>_<verb>`
//! names, `_new`/`_free` pairs, a `#[repr(C)]` result code and a panic boundary on every
//! export, over the same library code the `gridos` command line uses.
