//! The cross-adapter behaviour suite lives in `tests/behaviour.rs`.
