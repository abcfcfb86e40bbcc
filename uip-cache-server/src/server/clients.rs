//! `server.max_connections_per_client`: the connections each client holds
//! open, counted from accept to close (TLS handshakes in progress
//! included) over the listeners of one server, so one address cannot take
//! the connection limit every client shares.
//!
//! A client is an IPv4 address, or the /64 an IPv6 address belongs to: a
//! /64 is what one site or subscriber line is given, and every address in
//! it is the same host's for the choosing (privacy addresses, a host
//! picking a fresh one per connection). An IPv4-mapped IPv6 address
//! (`::ffff:192.0.2.1`, from a dual-stack listener) is its IPv4 address.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Who a connection counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address: its /64.
    V6(u64),
}

impl Client {
    /// The client `ip` counts as.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Client::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::V4(a) => write!(f, "{a}"),
            Client::V6(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64)),
        }
    }
}

/// The connections open per client, shared by the listeners of one
/// server. A client with none has no entry: the table holds at most one
/// entry per open connection.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    open: Mutex<HashMap<Client, u32>>,
    /// The warning of a refusal, once a second for all the listeners.
    pub(crate) warned: uip_cache_core::quiet::Quiet,
}

/// One connection counted against its client until it is dropped, however
/// its task ends (an error, a panic, the runtime dropping it).
#[derive(Debug)]
pub(crate) struct ClientSlot {
    clients: Arc<Clients>,
    client: Client,
}

impl Clients {
    /// An empty table.
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Client, u32>> {
        // The counts stay right even if a holder panicked: each change is
        // one statement.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection from `ip`, or `Err(client)` when its client
    /// holds `max` already (`max` 0: no limit; connections are counted
    /// all the same, so a reload that sets one finds the right counts).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Result<ClientSlot, Client> {
        let client = Client::of(ip);
        let mut open = self.lock();
        let held = open.entry(client).or_insert(0);
        if max != 0 && usize::try_from(*held).unwrap_or(usize::MAX) >= max {
            if *held == 0 {
                open.remove(&client);
            }
            return Err(client);
        }
        *held = held.saturating_add(1);
        Ok(ClientSlot {
            clients: self.clone(),
            client,
        })
    }

    /// The connections `client` holds now.
    #[cfg(test)]
    pub(crate) fn held(&self, client: Client) -> u32 {
        self.lock().get(&client).copied().unwrap_or(0)
    }

    /// The clients holding at least one connection.
    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.lock().len()
    }
}

impl ClientSlot {
    /// The client this connection counts against.
    #[cfg(test)]
    pub(crate) fn client(&self) -> Client {
        self.client
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.lock();
        if let Some(held) = open.get_mut(&self.client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            Client::of(ip("2001:db8:1:2::1")),
            Client::of(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            Client::of(ip("2001:db8:1:2::1")),
            Client::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Client::of(ip("::ffff:192.0.2.7")),
            Client::of(ip("192.0.2.7"))
        );
        assert_ne!(Client::of(ip("192.0.2.7")), Client::of(ip("192.0.2.8")));
        assert_eq!(
            Client::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(Client::of(ip("::ffff:192.0.2.7")).to_string(), "192.0.2.7");
    }

    #[test]
    fn a_client_at_its_limit_is_refused_until_one_of_its_connections_ends() {
        let clients = Clients::new();
        let a = ip("192.0.2.1");
        let mut held: Vec<_> = (0..3).map(|_| clients.admit(a, 3).unwrap()).collect();
        assert_eq!(
            clients.admit(a, 3).unwrap_err(),
            Client::V4("192.0.2.1".parse().unwrap())
        );
        // Another client is not concerned.
        let b = clients.admit(ip("192.0.2.2"), 3).unwrap();
        held.pop();
        let again = clients.admit(a, 3).unwrap();
        assert_eq!(clients.held(again.client()), 3);
        drop((held, again, b));
        assert_eq!(clients.clients(), 0, "no entry is left behind");
        // 0: no limit, still counted.
        let many: Vec<_> = (0..1000).map(|_| clients.admit(a, 0).unwrap()).collect();
        assert_eq!(clients.held(Client::of(a)), 1000);
        assert!(clients.admit(a, 1000).is_err());
        drop(many);
        assert_eq!(clients.clients(), 0);
    }

    #[tokio::test]
    async fn a_slot_is_given_back_when_its_task_panics_or_is_aborted() {
        let clients = Clients::new();
        let a = ip("2001:db8::1");
        let slot = clients.admit(a, 2).unwrap();
        let panicked = tokio::spawn(async move {
            let _slot = slot;
            panic!("a connection's task failing");
        });
        assert!(panicked.await.unwrap_err().is_panic());
        let slot = clients.admit(a, 2).unwrap();
        let aborted = tokio::spawn(async move {
            let _slot = slot;
            std::future::pending::<()>().await;
        });
        aborted.abort();
        assert!(aborted.await.unwrap_err().is_cancelled());
        assert_eq!(clients.held(Client::of(a)), 0);
        assert_eq!(clients.clients(), 0);
    }
}
