//! Subcommands of the `gridos` binary. Each module owns its clap arguments and its `run`.

pub mod cp;
