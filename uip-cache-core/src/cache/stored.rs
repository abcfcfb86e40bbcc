//! What the store holds under a key, as the cache reads it: a response, or
//! the marker of a key whose responses vary. Both are encoded as a
//! [`StoredResponse`] (a marker is one with status 0 and the `Vary` names),
//! so what stores hold is the same whichever this code reads it as.

use std::time::Duration;

use bytes::Bytes;

use crate::entry::{EntryError, StoredResponse};

/// The status of the small entry stored under a key whose responses vary: it
/// lists the `Vary` headers, and the variants live under keys that include them.
const VARY_MARKER_STATUS: u16 = 0;

/// What a key holds.
// Read once per lookup and moved, never held in bulk; boxing the entry
// would cost an allocation on every hit.
#[allow(clippy::large_enum_variant)]
pub(super) enum Stored {
    /// The key's responses vary on these request headers (lower case): its
    /// entries live under variant keys that include them.
    Vary(Vec<String>),
    /// A response.
    Entry(StoredResponse),
}

impl Stored {
    /// Reads the bytes a store holds under a key.
    pub(super) fn decode(bytes: &Bytes) -> Result<Self, EntryError> {
        Self::of(StoredResponse::decode(bytes)?)
    }

    /// [`Stored::decode`] for an answer: the entry's tags are left out
    /// (see [`StoredResponse::decode_untagged`]).
    pub(super) fn decode_for_answer(bytes: &Bytes) -> Result<Self, EntryError> {
        Self::of(StoredResponse::decode_untagged(bytes)?)
    }

    fn of(entry: StoredResponse) -> Result<Self, EntryError> {
        Ok(if entry.status == VARY_MARKER_STATUS {
            Stored::Vary(entry.vary)
        } else {
            Stored::Entry(entry)
        })
    }

    /// The bytes of the marker of a key whose responses vary on `vary`,
    /// kept for `ttl`.
    pub(super) fn encode_vary(vary: &[String], ttl: Duration) -> Result<Bytes, EntryError> {
        let mut marker = StoredResponse::new(VARY_MARKER_STATUS, Bytes::new());
        marker.vary = vary.to_vec();
        marker.freshness_lifetime = ttl;
        marker.encode()
    }
}
