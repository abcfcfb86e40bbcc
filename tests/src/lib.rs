//! The cross-adapter behaviour suite lives in `tests/behaviour/`, one file per theme.
