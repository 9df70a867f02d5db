//! rotor's integration tests: one test binary, one module per area, run against the real lab
//! (sshd hosts in mount namespaces, see `lab`). Needs root and `--features lab`:
//! `cargo test --features lab --test it`.

mod lab;
mod smoke;
