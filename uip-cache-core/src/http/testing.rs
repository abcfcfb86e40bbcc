//! Helpers for the tests of the rules: a policy from a few lines of YAML,
//! and origin responses to admit or to freshen an entry with.

use std::time::SystemTime;

use crate::field::FieldName;
use bytes::Bytes;

use super::admission::{admit, OriginResponse};
use crate::entry::StoredResponse;
use crate::policy::Policy;
use crate::request::RequestView;
use crate::stats::NoCacheReason;
use crate::{CacheConfig, PolicySet};

pub(super) fn policy(yaml_fields: &str) -> Policy {
    let c = CacheConfig::from_yaml_str(&format!(
        "policies:\n  - name: p\n    pattern: /p\n{yaml_fields}"
    ))
    .unwrap();
    PolicySet::compile(&c)
        .unwrap()
        .iter()
        .next()
        .unwrap()
        .clone()
}

pub(super) fn admit_with(
    policy: &Policy,
    req_headers: &[(&str, &str)],
    status: u16,
    headers: &[(&str, &str)],
) -> Result<StoredResponse, NoCacheReason> {
    with_origin(req_headers, status, headers, |req, origin| {
        admit(policy, req, origin)
    })
}

/// Runs `f` on a GET of `/p` with `req_headers` and the origin's answer
/// `status` with `headers`, received now.
pub(super) fn with_origin<T>(
    req_headers: &[(&str, &str)],
    status: u16,
    headers: &[(&str, &str)],
    f: impl FnOnce(&RequestView<'_>, &OriginResponse<'_>) -> T,
) -> T {
    let req_h = req_headers.to_vec();
    let req = RequestView::new("GET", "/p", &req_h);
    let h: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let list: Vec<(FieldName, Bytes)> = headers
        .iter()
        .map(|(n, v)| (n.to_string().into(), Bytes::from(v.to_string())))
        .collect();
    let now = SystemTime::now();
    f(&req, &OriginResponse::new(status, &h, &list, now, now))
}

pub(super) fn origin_304<'a>(
    list: &'a [(FieldName, Bytes)],
    h: &'a Vec<(String, String)>,
    now: SystemTime,
) -> OriginResponse<'a> {
    OriginResponse::new(304, h, list, now, now)
}
