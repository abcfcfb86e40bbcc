//! The integration tests of this crate, in one test binary: each module
//! is one theme.

mod disk_store;
mod streamed;
