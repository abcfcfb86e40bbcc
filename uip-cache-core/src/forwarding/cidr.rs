//! IP networks (`10.0.0.0/8`, `::1/128`), as `server.trusted_proxies`
//! lists them.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// An IP network such as `10.0.0.0/8` or `::1/128`; a plain address is a
/// network of one.
///
/// Hand-written rather than a dependency: it is a mask and a compare on
/// std's address types, and the only parsing is std's plus a prefix length.
/// IPv4 peers seen on a dual-stack socket (`::ffff:10.1.2.3`) match IPv4
/// networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network of `address` with a `prefix`-bit mask; `None` when the
    /// prefix is longer than the address or `address` has bits set past it
    /// (`10.1.0.0/8` is a mistake for `10.0.0.0/8` or `10.1.0.0/16`).
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let (network, prefix) = canonical(address, prefix)?;
        (masked(network, prefix) == network).then_some(Cidr { network, prefix })
    }

    /// The network's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 one it
/// is, so that it matches the canonical peers `contains` compares.
fn canonical(address: IpAddr, prefix: u8) -> Option<(IpAddr, u8)> {
    match address {
        IpAddr::V4(_) if prefix <= 32 => Some((address, prefix)),
        IpAddr::V6(v6) if prefix <= 128 => match v6.to_ipv4_mapped() {
            Some(v4) if prefix >= 96 => Some((IpAddr::V4(v4), prefix - 96)),
            _ => Some((address, prefix)),
        },
        _ => None,
    }
}

pub(super) fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let err = |why: &str| CidrError(format!("`{s}` is not {why}"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let address: IpAddr = addr
            .parse()
            .map_err(|_| err("an IP address or network such as 10.0.0.0/8 or ::1/128"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(err(&format!("a network: the prefix is at most {max}"))),
                }
            }
            Some(_) => return Err(err("a network: the prefix length must be a number")),
        };
        Cidr::new(address, prefix).ok_or_else(|| {
            let network = masked(canonical(address, prefix).map_or(address, |c| c.0), prefix);
            err(&format!(
                "a network: it has address bits set past the /{prefix} prefix (the network is {network}/{prefix})"
            ))
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}
