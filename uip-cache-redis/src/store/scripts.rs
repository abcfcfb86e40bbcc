//! The Lua scripts the store runs with `EVAL`, each in a file of its own
//! under `scripts/`. A script touches only the keys it is given; all but
//! [`DEL_IF_GEN_BATCH`] (a single server's) are given keys of one hash
//! slot, so they run on a cluster too.

// ===== entries and indexes =====

/// Drops path-index members whose entries have expired (both keys share a
/// slot): KEYS[1] the path index, KEYS[2] the expiry index, ARGV[1] now in
/// ms, ARGV[2] the most members to drop.
pub(super) const PRUNE: &str = include_str!("scripts/prune_paths.lua");

/// Forgets the tags ARGV[2..] whose latest expiry (their score) is not
/// after ARGV[1]: their sets have just been emptied of expired members.
pub(super) const FORGET_TAGS: &str = include_str!("scripts/forget_tags.lua");

// ===== purges =====

/// Deletes a key only if it still holds the write generation the index knew.
pub(super) const DEL_IF_GEN: &str = include_str!("scripts/del_if_gen.lua");

/// The same for a whole batch, on a single server (keys may span slots
/// there). 500 keys run in about a millisecond.
pub(super) const DEL_IF_GEN_BATCH: &str = include_str!("scripts/del_if_gen_batch.lua");

/// Soft purge of one key: writes the rewritten entry (ARGV[2], after a
/// fresh write version) under the same generation (ARGV[1]) if the key
/// still holds it, for ARGV[3] ms at
/// most and never longer than it had left, so the indexes, whose scores
/// say when the entry expires, stay right.
pub(super) const REWRITE_IF_GEN: &str = include_str!("scripts/rewrite_if_gen.lua");

// ===== the invalidation log =====

/// Raises the epoch and logs an invalidation under it, keeping the last
/// ARGV[2]; past ARGV[3] lines in the current second (Redis's clock), the
/// line is left out and the gap tells readers the log is incomplete. The
/// three keys share a slot.
pub(super) const RECORD: &str = include_str!("scripts/log_record.lua");

/// The invalidations logged after epoch ARGV[1]; nil when the log no longer
/// holds all of them (trimmed, or left out past the rate), or when there
/// are more than ARGV[2].
pub(super) const SINCE: &str = include_str!("scripts/log_since.lua");

// ===== leases =====

/// Gives back a lease only if it is still ours.
pub(super) const RELEASE: &str = include_str!("scripts/release_lease.lua");
