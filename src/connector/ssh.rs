//! SSH connector on the ssh2 crate.
