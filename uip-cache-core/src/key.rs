//! Cache keys: `<prefix><sha256 hex>` over an unambiguous encoding of the request.
//!
//! Every keyed part is written as a one-byte field tag, a length and the bytes,
//! so no two different requests can produce the same encoding (the seed joined
//! parts with `|`, which let `a|b` + `c` collide with `a` + `b|c`). The parts:
//! method class (GET and HEAD share entries), scheme, host (unless
//! `key.include_host: false`), path, query (every parameter sorted by name, or
//! only the `vary_by` ones), `Accept`, the `vary_by` headers and the stored
//! response's `Vary` headers (each in a normal form: white space around
//! list commas and the spelling of `Accept-Language` do not make another
//! variant, see `normalise.rs`), a SHA-256 of the body when `vary_by` has `body`,
//! and, from a trusted proxy, the forwarding headers it sent that change what
//! an application builds (see [`crate::forwarding`]).
//!
//! ```
//! use uip_cache_core::{KeySpec, RequestView};
//!
//! let spec = KeySpec::default();
//! let h: [(&str, &str); 0] = [];
//! let a = spec.key(&RequestView::new("GET", "/e", &h).query(Some("a=1&b=2")), &[]);
//! let b = spec.key(&RequestView::new("HEAD", "/e", &h).query(Some("b=2&a=1")), &[]);
//! assert_eq!(a, b);
//! assert!(a.as_str().starts_with("cache:"));
//! ```

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::config::KeyConfig;
use crate::pattern::query_pairs;
use crate::request::RequestView;

/// A cache key: the configured prefix and 64 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The key under which a partial response (a stored 206) for the same
    /// request lives: the same prefix and 64 other hex digits, a SHA-256 of
    /// this key, so a part never shares a key with a complete response
    /// and never replaces or shadows one.
    pub fn part(&self) -> CacheKey {
        let hex_at = self.0.len().saturating_sub(64);
        let mut h = Sha256::new();
        h.update(PART_VERSION);
        h.update(self.0.as_bytes());
        let mut key = String::with_capacity(self.0.len());
        key.push_str(self.0.get(..hex_at).unwrap_or_default());
        push_hex(&mut key, &h.finalize());
        CacheKey(key)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl AsRef<str> for CacheKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What a policy's keys are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    prefix: String,
    include_host: bool,
    /// `None`: every query parameter; `Some`: only these names (sorted).
    query_params: Option<Vec<String>>,
    /// Header names (lower case, sorted, without `accept`, which is always keyed).
    headers: Vec<String>,
    body: bool,
}

/// What the key holds, for people: `method, scheme, host, path, query
/// (every parameter), headers: accept`.
impl std::fmt::Display for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("method, scheme, ")?;
        if self.include_host {
            f.write_str("host, ")?;
        }
        f.write_str("path, ")?;
        match &self.query_params {
            None => f.write_str("query (every parameter)")?,
            Some(p) => write!(f, "query (only {})", p.join(", "))?,
        }
        write!(f, ", headers: accept")?;
        for h in &self.headers {
            write!(f, ", {h}")?;
        }
        if self.body {
            f.write_str(", body (SHA-256)")?;
        }
        f.write_str(" + the response's Vary")
    }
}

impl Default for KeySpec {
    fn default() -> Self {
        KeySpec::new(&KeyConfig::default(), &[])
    }
}

// Field tags of the encoding. Changing them changes every key: bump KEY_VERSION.
const KEY_VERSION: &[u8] = b"uip-cache key v1";
/// What the key of a stored part hashes before the complete response's key.
const PART_VERSION: &[u8] = b"uip-cache part v1";
const F_METHOD: u8 = 1;
const F_SCHEME: u8 = 2;
const F_AUTHORITY: u8 = 3;
const F_PATH: u8 = 4;
const F_QUERY: u8 = 5;
const F_PARAM_NAME: u8 = 6;
const F_PARAM_VALUE: u8 = 7;
const F_PARAM_NO_VALUE: u8 = 8;
const F_HEADER_NAME: u8 = 9;
const F_HEADER_VALUE: u8 = 10;
const F_BODY: u8 = 11;
const F_NO_BODY: u8 = 12;
const F_FORWARDED: u8 = 13;
/// The one language a request prefers, in place of its `Accept-Language`.
const F_LANGUAGE: u8 = 14;

impl KeySpec {
    /// Builds the spec from the `key` section and a policy's `vary_by`.
    ///
    /// Plain names mean both a query parameter and a header (the seed's
    /// reading); `query:NAME`, `header:NAME` and `body` are explicit. When
    /// `vary_by` names no query parameter, every parameter is keyed.
    pub fn new(key: &KeyConfig, vary_by: &[String]) -> Self {
        let mut params = Vec::new();
        let mut headers = Vec::new();
        let mut body = false;
        for v in vary_by {
            let v = v.trim();
            if v.eq_ignore_ascii_case("body") {
                body = true;
            } else if let Some(n) = v.strip_prefix("query:") {
                params.push(n.to_owned());
            } else if let Some(n) = v.strip_prefix("header:") {
                headers.push(n.to_ascii_lowercase());
            } else {
                params.push(v.to_owned());
                headers.push(v.to_ascii_lowercase());
            }
        }
        if body {
            // The same bytes mean another query under another type or
            // encoding (SPARQL form vs query, GraphQL JSON vs text).
            headers.extend(["content-type".to_owned(), "content-encoding".to_owned()]);
        }
        params.sort();
        params.dedup();
        headers.retain(|h| h != "accept");
        headers.sort();
        headers.dedup();
        KeySpec {
            prefix: key.prefix.clone(),
            include_host: key.include_host,
            query_params: (!params.is_empty()).then_some(params),
            headers,
            body,
        }
    }

    /// Whether the request header `name` (lower case) is part of the key.
    pub fn keys_header(&self, name: &str) -> bool {
        name == "accept" || self.headers.iter().any(|h| h == name)
    }

    /// Whether the body is part of the key (the adapter must buffer it).
    pub fn uses_body(&self) -> bool {
        self.body
    }

    /// The key of `req`, also varying on `response_vary`: the lower-case header
    /// names of the stored response's `Vary` (empty on the first lookup).
    pub fn key(&self, req: &RequestView<'_>, response_vary: &[String]) -> CacheKey {
        self.key_as(req, response_vary, None)
    }

    /// The key under which a response varying on `response_vary`, one of
    /// whose names is `accept-language`, is also found by the requests that
    /// prefer its `Content-Language` (`content_language`, the field's value)
    /// to every other language: the key of `req` with its `Accept-Language`
    /// replaced by that language. `None` when the response does not vary on
    /// `Accept-Language`, does not name one language, or `req` does not
    /// weight that language at the top (so an answer the origin gave in a
    /// language the request did not ask for first, such as a fallback
    /// page, is never found by those who prefer that language).
    ///
    /// ```
    /// use uip_cache_core::{KeySpec, RequestView};
    ///
    /// let spec = KeySpec::default();
    /// let vary = ["accept-language".to_owned()];
    /// let stored_for = RequestView::new("GET", "/x", &[("accept-language", "en, de")]);
    /// let asking = RequestView::new("GET", "/x", &[("accept-language", "fr;q=0.5, de")]);
    /// let other = RequestView::new("GET", "/x", &[("accept-language", "fr, de;q=0.5")]);
    /// let stored_too = spec.language_key(&stored_for, &vary, b"de").unwrap();
    /// assert_eq!(spec.preferred_language_key(&asking, &vary), Some(stored_too));
    /// assert_ne!(spec.preferred_language_key(&other, &vary), spec.language_key(&stored_for, &vary, b"de"));
    /// assert_eq!(spec.language_key(&stored_for, &vary, b"de, en"), None);
    /// // A German answer to a request that did not ask for German first.
    /// let fallback = RequestView::new("GET", "/x", &[("accept-language", "ja")]);
    /// assert_eq!(spec.language_key(&fallback, &vary, b"de"), None);
    /// ```
    pub fn language_key(
        &self,
        req: &RequestView<'_>,
        response_vary: &[String],
        content_language: &[u8],
    ) -> Option<CacheKey> {
        if !response_vary.iter().any(|v| v == "accept-language") {
            return None;
        }
        let language = normalise::content_language(content_language)?;
        if !normalise::weights_at_top(
            &combined(req, "accept-language").unwrap_or_default(),
            &language,
        ) {
            return None;
        }
        Some(self.key_as(req, response_vary, Some(&language)))
    }

    /// The key under which [`KeySpec::language_key`] stored the answer in
    /// the language `req` prefers to every other; `None` when the response
    /// does not vary on `Accept-Language` or `req` prefers no one language
    /// (none sent, two at the top weight, `*` at the top).
    pub fn preferred_language_key(
        &self,
        req: &RequestView<'_>,
        response_vary: &[String],
    ) -> Option<CacheKey> {
        if !response_vary.iter().any(|v| v == "accept-language") {
            return None;
        }
        let language = normalise::preferred_language(&combined(req, "accept-language")?)?;
        Some(self.key_as(req, response_vary, Some(&language)))
    }

    /// [`KeySpec::key`], with `Accept-Language` keyed as the one
    /// `language` when there is one.
    fn key_as(
        &self,
        req: &RequestView<'_>,
        response_vary: &[String],
        language: Option<&[u8]>,
    ) -> CacheKey {
        let mut h = Sha256::new();
        h.update(KEY_VERSION);
        let method = req.method;
        let class = if method == "HEAD" || method == "GET" {
            "GET"
        } else {
            method
        };
        field(&mut h, F_METHOD, class.as_bytes());
        // Always keyed, host or not: an origin answers `http` and `https`
        // differently (a redirect to `https`, absolute links), and neither
        // answer may serve the other's clients. No scheme known: plain
        // http, as the adapters key it.
        field(&mut h, F_SCHEME, req.scheme.unwrap_or("http").as_bytes());
        if self.include_host {
            field_lower(&mut h, F_AUTHORITY, req.authority.unwrap_or("").as_bytes());
        }
        field(&mut h, F_PATH, req.path.as_bytes());
        self.hash_query(&mut h, req.query);

        header(&mut h, req, "accept");
        let keyed = |h: &mut Sha256, name: &str| match language {
            Some(l) if name == "accept-language" => {
                field(h, F_HEADER_NAME, name.as_bytes());
                field(h, F_LANGUAGE, l);
            }
            _ => header(h, req, name),
        };
        if response_vary.is_empty() && self.headers.is_sorted() {
            // The names in the order the list below would be sorted into,
            // without making it.
            for name in &self.headers {
                keyed(&mut h, name);
            }
        } else {
            let mut names: Vec<&str> = self.headers.iter().map(String::as_str).collect();
            for v in response_vary {
                let v = v.as_str();
                if v != "accept" && !names.contains(&v) {
                    names.push(v);
                }
            }
            names.sort_unstable();
            for name in names {
                keyed(&mut h, name);
            }
        }
        // What a trusted proxy says besides scheme and host (a path prefix,
        // a port, the URL before a rewrite) changes the links an
        // application builds; requests from anyone else never carry it
        // (adapters remove it), so their keys are as before.
        if req.via_trusted_proxy {
            for name in crate::forwarding::keyed_from_trusted() {
                if req.headers.first(name).is_some() {
                    field(&mut h, F_FORWARDED, b"");
                    header(&mut h, req, name);
                }
            }
        }

        if self.body {
            match req.body {
                Some(b) => field(&mut h, F_BODY, &Sha256::digest(b)),
                None => field(&mut h, F_NO_BODY, b""),
            }
        }

        let digest = h.finalize();
        let mut key = String::with_capacity(self.prefix.len() + 64);
        key.push_str(&self.prefix);
        push_hex(&mut key, &digest);
        CacheKey(key)
    }

    /// The tag every entry stored for this host (when keys hold the host),
    /// path and keyed query carries, whatever its method, headers and
    /// `Vary`: `target:` and 32 hex digits of a SHA-256. Invalidation of a
    /// target URI after an unsafe request removes this tag, so it reaches
    /// the entries of that URI on that host and no other host's: the purge
    /// is as narrow as the key, on every store, through its tag index.
    ///
    /// The scheme is left out (a write over `http` also removes what was
    /// cached over `https` for the same host); `authority` is compared as
    /// the key compares it (ASCII case-insensitively).
    ///
    /// ```
    /// use uip_cache_core::{KeySpec, RequestView};
    ///
    /// let spec = KeySpec::default();
    /// let h: [(&str, &str); 0] = [];
    /// let a = RequestView::new("GET", "/x", &h).authority(Some("victim.example"));
    /// let b = RequestView::new("POST", "/x", &h).authority(Some("VICTIM.example"));
    /// let c = RequestView::new("POST", "/x", &h).authority(Some("attacker.example"));
    /// assert_eq!(spec.target_tag(&a), spec.target_tag(&b));
    /// assert_ne!(spec.target_tag(&a), spec.target_tag(&c));
    /// assert!(spec.target_tag(&a).starts_with("target:"));
    /// ```
    pub fn target_tag(&self, req: &RequestView<'_>) -> String {
        let mut h = Sha256::new();
        h.update(TARGET_VERSION);
        if self.include_host {
            field_lower(&mut h, F_AUTHORITY, req.authority.unwrap_or("").as_bytes());
        }
        field(&mut h, F_PATH, req.path.as_bytes());
        self.hash_query(&mut h, req.query);
        let digest = h.finalize();
        let mut tag = String::with_capacity(TARGET_TAG_PREFIX.len() + 32);
        tag.push_str(TARGET_TAG_PREFIX);
        push_hex(&mut tag, &digest[..16]);
        tag
    }

    /// The keyed query: (name, value) pairs sorted by name; a stable sort
    /// keeps the order of repeated names, which APIs may give meaning to.
    fn hash_query(&self, h: &mut Sha256, query: Option<&str>) {
        let mut pairs: Vec<(&str, Option<&str>)> =
            query.map(|q| query_pairs(q).collect()).unwrap_or_default();
        if let Some(only) = &self.query_params {
            pairs.retain(|(n, _)| only.binary_search_by(|o| o.as_str().cmp(n)).is_ok());
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        field(h, F_QUERY, &(pairs.len() as u64).to_le_bytes());
        for (n, v) in pairs {
            field(h, F_PARAM_NAME, n.as_bytes());
            match v {
                Some(v) => field(h, F_PARAM_VALUE, v.as_bytes()),
                None => field(h, F_PARAM_NO_VALUE, b""),
            }
        }
    }
}

/// What [`KeySpec::target_tag`]s start with.
pub const TARGET_TAG_PREFIX: &str = "target:";

const TARGET_VERSION: &[u8] = b"uip-cache target v1";

/// Hex by hand: a table lookup per byte, no intermediate allocation.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
}

fn field(h: &mut Sha256, tag: u8, bytes: &[u8]) {
    h.update([tag]);
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// [`field`] of `bytes` in ASCII lower case (as `to_ascii_lowercase`
/// would give them), lowered a piece at a time on the stack.
fn field_lower(h: &mut Sha256, tag: u8, bytes: &[u8]) {
    h.update([tag]);
    h.update((bytes.len() as u64).to_le_bytes());
    let mut piece = [0u8; 64];
    for chunk in bytes.chunks(piece.len()) {
        let lower = &mut piece[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        h.update(&*lower);
    }
}

/// A header's name and its value in normal form ([`normalise`]): its
/// lines combined, or, for the fields keyed as sent, each line. A missing
/// header (no value) and an empty one (one empty value) encode differently.
fn header(h: &mut Sha256, req: &RequestView<'_>, name: &str) {
    field(h, F_HEADER_NAME, name.as_bytes());
    if normalise::as_sent(name) {
        req.headers.for_each_value(name, &mut |v| {
            field(h, F_HEADER_VALUE, v.trim_ascii());
        });
        return;
    }
    let Some(value) = combined(req, name) else {
        return;
    };
    field(h, F_HEADER_VALUE, &normalise::normalise(name, &value));
}

/// The lines of `req`'s field `name` combined with commas (RFC 9110
/// section 5.3); `None` when it has none. One line (the usual case) is
/// read in place.
fn combined<'r>(req: &RequestView<'r>, name: &str) -> Option<Cow<'r, [u8]>> {
    let mut lines = 0usize;
    req.headers.for_each_value(name, &mut |_| lines += 1);
    match lines {
        0 => None,
        1 => req.headers.first(name).map(Cow::Borrowed),
        _ => {
            let mut c = Vec::new();
            req.headers.for_each_value(name, &mut |v| {
                if !c.is_empty() {
                    c.push(b',');
                }
                c.extend_from_slice(v);
            });
            Some(Cow::Owned(c))
        }
    }
}

mod normalise;

#[cfg(test)]
mod tests;
