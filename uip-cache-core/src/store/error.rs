//! Failed store operations.

use std::fmt;

/// A store operation that failed. Callers decide by asking
/// ([`is_timeout`](StoreError::is_timeout), ...), not by matching text.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    partial: Option<u64>,
}

/// The kinds of [`StoreError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The operation took longer than the store timeout.
    Timeout,
    /// The backend could not be reached.
    Connection,
    /// The circuit breaker is open: the backend is skipped for now.
    Unavailable,
    /// The backend answered with an error.
    Backend,
}

impl StoreError {
    /// An error of `kind` caused by `source`.
    pub fn new(
        kind: StoreErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError {
            kind,
            source: Some(source.into()),
            partial: None,
        }
    }

    /// An error of `kind` with no further cause.
    pub const fn from_kind(kind: StoreErrorKind) -> Self {
        StoreError {
            kind,
            source: None,
            partial: None,
        }
    }

    /// The same error, saying that the failed invalidation had already
    /// removed (or, for a soft purge, rewritten) `done` entries when it
    /// stopped: a purge that fails part-way reports what it did.
    #[must_use]
    pub fn with_partial(mut self, done: u64) -> Self {
        self.partial = Some(done);
        self
    }

    /// How many entries a failed invalidation had already removed or
    /// rewritten, when it says (see [`StoreError::with_partial`]).
    pub fn partial(&self) -> Option<u64> {
        self.partial
    }

    /// The kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The operation timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == StoreErrorKind::Timeout
    }

    /// The backend could not be reached.
    pub fn is_connection(&self) -> bool {
        self.kind == StoreErrorKind::Connection
    }

    /// The backend is being skipped by the circuit breaker.
    pub fn is_unavailable(&self) -> bool {
        self.kind == StoreErrorKind::Unavailable
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            StoreErrorKind::Timeout => "store operation timed out",
            StoreErrorKind::Connection => "store connection failed",
            StoreErrorKind::Unavailable => "store is unavailable (circuit open)",
            StoreErrorKind::Backend => "store returned an error",
        };
        match &self.source {
            Some(s) => write!(f, "{what}: {s}"),
            None => f.write_str(what),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
