//! Header field names as the cache keeps them, and the list of header
//! changes an adapter applies ([`HeaderEdits`]).
//!
//! Entries, cached responses and request header lists name their fields in
//! lower case. A hit decodes every stored field name and adds a few of its
//! own (`age`, `x-cache`, `content-length`); as owned strings that was one
//! allocation per field per hit. The common names are static strings
//! instead, so a hit allocates none of them.
//!
//! ```
//! use std::borrow::Cow;
//! use uip_cache_core::field_name;
//!
//! assert!(matches!(field_name("content-type"), Cow::Borrowed("content-type")));
//! assert!(matches!(field_name("x-tenant"), Cow::Owned(_)));
//! ```

use std::borrow::Cow;

mod edits;
pub use edits::{HeaderEdit, HeaderEdits};

/// A header field name, lower case: static for the common names.
pub type FieldName = Cow<'static, str>;

/// `name` (lower case) as a [`FieldName`], without allocating when it is a
/// common one.
pub fn field_name(name: &str) -> FieldName {
    macro_rules! known {
        ($($n:literal),* $(,)?) => {
            match name {
                $($n => Cow::Borrowed($n),)*
                _ => Cow::Owned(name.to_owned()),
            }
        };
    }
    known!(
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-allow-origin",
        "access-control-expose-headers",
        "access-control-max-age",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "cache-status",
        "cdn-cache-control",
        "connection",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-range",
        "content-security-policy",
        "content-type",
        "cookie",
        "date",
        "etag",
        "expires",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "link",
        "location",
        "origin",
        "pragma",
        "range",
        "referer",
        "referrer-policy",
        "retry-after",
        "server",
        "set-cookie",
        "strict-transport-security",
        "surrogate-control",
        "surrogate-key",
        "user-agent",
        "vary",
        "via",
        "x-cache",
        "x-content-type-options",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-frame-options",
        "x-request-id",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_name_comes_back_equal(name in "[a-z0-9-]{0,40}|content-type|etag|x-cache") {
            prop_assert_eq!(field_name(&name), name.as_str());
        }
    }
}
