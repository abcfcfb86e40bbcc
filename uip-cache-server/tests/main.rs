//! The integration tests of this crate, in one test binary: each module
//! is one theme. One binary links once, where a binary per file linked
//! the whole dependency tree 8 times.

mod attack_connection_flood;
mod attack_cpdos;
mod attack_forwarding_headers;
mod attack_invalidation;
mod attack_invalidation_store;
mod attack_log_flood;
mod attack_slow_clients;
mod attack_transform;
mod cli;
mod disk_store;
mod disk_stream;
mod fast_hits;
mod fast_lookups;
mod fast_relay;
mod interim;
mod proxy;
mod ranges;
mod reload;
mod routes;
mod tls;
mod tls_cli;
mod tls_support;
mod tls_upstream;
