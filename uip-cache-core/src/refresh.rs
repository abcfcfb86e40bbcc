//! Stale-while-revalidate refreshes sent back through the app by front-ends
//! that cannot send the client's request on (actix-web): the marker that
//! lets the cache in front of the app recognise them.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header that marks a refresh request (value: `<token> <scheme>`): the
/// cache in front of the app records it as a fetch of the client's key.
pub const REFRESH_HEADER: &str = "x-uip-cache-refresh";

/// A secret per cache handle that marks refresh requests, so that a client
/// cannot pass its request off as one.
#[derive(Clone)]
pub struct RefreshToken {
    token: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

impl RefreshToken {
    /// A new token: 128 bits from the keys of two std hashers, which the
    /// standard library seeds from the operating system's random source (no
    /// random number crate is needed for this).
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let part = || {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        };
        let token = format!("{:016x}{:016x}", part(), part());
        let digest = Sha256::digest(token.as_bytes()).into();
        RefreshToken { token, digest }
    }

    /// The scheme a refresh request's header carries, when the header holds
    /// this token (compared in constant time).
    pub fn check<'v>(&self, header: &'v [u8]) -> Option<&'v str> {
        let text = std::str::from_utf8(header).ok()?;
        let (token, scheme) = text.split_once(' ')?;
        let d: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let ok: bool = d.ct_eq(&self.digest).into();
        (ok && matches!(scheme, "http" | "https")).then_some(scheme)
    }
}

impl Default for RefreshToken {
    fn default() -> Self {
        Self::new()
    }
}

impl RefreshToken {
    /// The marker header's value for a refresh of a `scheme` key.
    pub fn header_value(&self, scheme: &str) -> String {
        format!("{} {scheme}", self.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_token_with_a_known_scheme_passes() {
        let t = RefreshToken::new();
        let other = RefreshToken::new();
        assert_ne!(t.header_value("http"), other.header_value("http"));
        assert_eq!(t.check(t.header_value("https").as_bytes()), Some("https"));
        assert_eq!(t.check(other.header_value("http").as_bytes()), None);
        assert_eq!(t.check(t.header_value("ftp").as_bytes()), None);
        assert_eq!(t.check(b"forged https"), None);
        assert_eq!(t.check(b""), None);
        assert_eq!(t.check(&[0xff, 0x20, 0x68]), None);
        assert!(!format!("{t:?}").contains(&t.header_value("")[..8]));
    }
}
