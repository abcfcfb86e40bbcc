//! The integration tests of this crate, in one test binary: each module
//! is one theme. One binary links once, where a binary per file linked
//! the whole dependency tree 5 times.

#[macro_use]
mod delegate;

mod at_hand;
mod clock;
mod conformance_faults;
mod cpdos_plan;
mod memory_store;
mod ranges;
mod revalidation;
mod settings;
mod transform;
mod unsafe_purge_bound;

/// Header fields as a front end hands them to core, from `(name, value)`
/// pairs.
fn owned(headers: &[(&str, &str)]) -> Vec<(uip_cache_core::FieldName, bytes::Bytes)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string().into(), bytes::Bytes::from(v.to_string())))
        .collect()
}
