//! Runnable examples live in this folder; see the `[[example]]` entries.
