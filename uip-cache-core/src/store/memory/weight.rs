//! What an entry of the memory store costs in bytes, as allocated: the
//! weight moka bounds the store by.

use bytes::Bytes;

use super::MemEntry;
use crate::store::PutOptions;

/// The bytes glibc's malloc takes for a request of `n` (none for 0): the
/// request plus an 8-byte chunk header, rounded up to 16, at least 32.
fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8).div_ceil(16) * 16).max(32)
    }
}

/// moka's own bookkeeping per entry (its hash table bucket and slot, the
/// entry's info, access- and write-order queue nodes, timer wheel node, the
/// key's hash record and `Arc` of the key), measured by
/// `tests/memory_bound.rs` at about 400 bytes, with room to spare.
const MOKA_PER_ENTRY: usize = 512;
/// One member of a tag's or path's set in the index (a key's hash and
/// `Arc<str>`, and a generation: 32 bytes and a control byte, in a hash
/// table at most 7/8 full that doubles, so as little as 7/16 full).
const INDEX_MEMBER: usize = 80;
/// A tag or path set of its own (its slot in the index map, the members
/// table's first allocation), besides its name: charged to every entry, as
/// if no other entry shared its tags and path.
const INDEX_SET: usize = 256;
/// A value in sealed memory besides its pages: its region, registry node
/// and `Bytes` owner, and what the kernel keeps for the file and its
/// mapping (charged to the process's cgroup too).
const SEALED_PER_VALUE: usize = 1024;
const PAGE: usize = 4096;

/// Bytes an entry really costs, as allocated: its value (an exact heap
/// allocation and the shared header its first clone makes, or whole pages
/// of sealed memory), key, the entry with its tags, path and query, its
/// index members and sets, and moka's bookkeeping. `tests/memory_bound.rs`
/// checks that this is never less than what a full store holds.
pub(super) fn weight(key: &str, value: &Bytes, sealed: bool, o: &PutOptions<'_>) -> u32 {
    let value = if sealed {
        value.len().div_ceil(PAGE) * PAGE + SEALED_PER_VALUE
    } else {
        heap(value.len()) + heap(3 * std::mem::size_of::<usize>())
    };
    let names: usize = o.tags.iter().map(|t| heap(t.len())).sum::<usize>() + heap(o.path.len());
    let n = value
        + heap(2 * std::mem::size_of::<usize>() + key.len())
        + heap(2 * std::mem::size_of::<usize>() + std::mem::size_of::<MemEntry>())
        + heap(std::mem::size_of_val(o.tags))
        // The entry's own copies of its tags and path, and the index's.
        + 2 * names
        + o.query.map_or(0, |q| heap(q.len()))
        + (o.tags.len() + 1) * (INDEX_MEMBER + INDEX_SET)
        + MOKA_PER_ENTRY;
    u32::try_from(n).unwrap_or(u32::MAX)
}
