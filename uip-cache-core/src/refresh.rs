//! Stale-while-revalidate refreshes sent back through the app by front-ends
//! that cannot send the client's request on (actix-web): the marker that
//! lets the cache in front of the app recognise them.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The header the cache answers a refresh it recorded with, so the sender
/// knows the entry was stored (and not answered by another process).
pub const REFRESHED_HEADER: &str = "x-uip-cache-refreshed";

/// `N` random bytes from the operating system, in hex.
pub fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // Without an OS random source there is nothing better to do than fail
    // loudly at start-up.
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    /// A new token: 128 bits from the operating system's random source.
    pub fn new() -> Self {
        let token = random_hex::<16>();
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
