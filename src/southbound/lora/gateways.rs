//! The packet forwarders the Semtech UDP source hears from: gateway EUI → the address of
//! its latest PULL_DATA, where its PULL_RESPs go (SPEC §8 "LoRaWAN"). Pure, time injected.
//!
//! The socket is open to anything on the cabinet LAN (SPEC §7), so the map is bounded
//! ([`MAX_GATEWAYS`]) and forgets a gateway after [`GATEWAY_EXPIRY`] without a PULL_DATA
//! (a packet forwarder sends one every 10 s by default): a flood of made-up EUIs is
//! refused once the map is full and cannot grow memory. With `[lora] gateway_euis`, only
//! the listed gateways are heard at all.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Gateways remembered at once (a cabinet has one concentrator; neighbours' forwarders
/// pointed at it stay far below).
pub const MAX_GATEWAYS: usize = 64;
/// Silence after which a gateway is forgotten (6 missed keep-alives at the default 10 s).
pub const GATEWAY_EXPIRY: Duration = Duration::from_secs(60);

/// Why a gateway's datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not in `[lora] gateway_euis`.
    NotAllowed,
    /// [`MAX_GATEWAYS`] others are already known.
    Full,
}

/// What a PULL_DATA changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// The first PULL_DATA of this gateway (or the first after it expired).
    New,
    /// From another address than the previous one (a restarted forwarder).
    Moved(SocketAddr),
    Same,
}

struct Seen {
    addr: SocketAddr,
    last: Instant,
}

pub struct Gateways {
    map: HashMap<[u8; 8], Seen>,
    allow: Option<HashSet<[u8; 8]>>,
}

impl Gateways {
    /// `allow`: the `[lora] gateway_euis` allow-list (None: every gateway).
    pub fn new(allow: Option<&[[u8; 8]]>) -> Gateways {
        Gateways {
            map: HashMap::new(),
            allow: allow.map(|a| a.iter().copied().collect()),
        }
    }

    /// Whether datagrams of gateway `eui` are heard at all.
    pub fn allowed(&self, eui: &[u8; 8]) -> bool {
        self.allow.as_ref().is_none_or(|a| a.contains(eui))
    }

    /// Records a PULL_DATA of `eui` from `from`.
    pub fn pull_data(
        &mut self,
        eui: [u8; 8],
        from: SocketAddr,
        now: Instant,
    ) -> Result<Pulled, Refusal> {
        if !self.allowed(&eui) {
            return Err(Refusal::NotAllowed);
        }
        if let Some(s) = self.map.get_mut(&eui) {
            s.last = now;
            let before = std::mem::replace(&mut s.addr, from);
            return Ok(if before == from {
                Pulled::Same
            } else {
                Pulled::Moved(before)
            });
        }
        if self.map.len() >= MAX_GATEWAYS {
            self.expire(now);
            if self.map.len() >= MAX_GATEWAYS {
                return Err(Refusal::Full);
            }
        }
        self.map.insert(
            eui,
            Seen {
                addr: from,
                last: now,
            },
        );
        Ok(Pulled::New)
    }

    /// Where PULL_RESPs for `eui` go, if it sent a PULL_DATA lately.
    pub fn address(&self, eui: &[u8; 8]) -> Option<SocketAddr> {
        self.map.get(eui).map(|s| s.addr)
    }

    /// Forgets gateways silent for [`GATEWAY_EXPIRY`]; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<[u8; 8]> {
        let gone: Vec<[u8; 8]> = self
            .map
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last) >= GATEWAY_EXPIRY)
            .map(|(e, _)| *e)
            .collect();
        for e in &gone {
            self.map.remove(e);
        }
        gone
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! The gateway map stays bounded, forgets silent gateways and honours the allow-list.
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_flood_of_made_up_euis_is_refused_once_the_map_is_full_and_silent_ones_expire() {
        let mut g = Gateways::new(None);
        let t0 = Instant::now();
        for i in 0..MAX_GATEWAYS as u64 {
            assert_eq!(g.pull_data(i.to_be_bytes(), addr(1), t0), Ok(Pulled::New));
        }
        for i in 0..1000u64 {
            let eui = (1_000_000 + i).to_be_bytes();
            assert_eq!(g.pull_data(eui, addr(2), t0), Err(Refusal::Full));
        }
        assert_eq!(g.len(), MAX_GATEWAYS);
        // A known gateway keeps its place and refreshes it.
        let t1 = t0 + GATEWAY_EXPIRY / 2;
        assert_eq!(
            g.pull_data(0u64.to_be_bytes(), addr(1), t1),
            Ok(Pulled::Same)
        );
        let t2 = t0 + GATEWAY_EXPIRY;
        assert_eq!(g.expire(t2).len(), MAX_GATEWAYS - 1);
        assert_eq!(g.address(&0u64.to_be_bytes()), Some(addr(1)));
        assert_eq!(g.address(&5u64.to_be_bytes()), None);
        assert_eq!(g.pull_data([9; 8], addr(3), t2), Ok(Pulled::New));
        assert_eq!(g.pull_data([9; 8], addr(4), t2), Ok(Pulled::Moved(addr(3))));
        assert_eq!(g.address(&[9; 8]), Some(addr(4)));
    }

    #[test]
    fn with_an_allow_list_only_the_listed_gateways_are_heard() {
        let mut g = Gateways::new(Some(&[[0xaa; 8]]));
        let t0 = Instant::now();
        assert!(g.allowed(&[0xaa; 8]) && !g.allowed(&[0xbb; 8]));
        assert_eq!(
            g.pull_data([0xbb; 8], addr(1), t0),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(g.pull_data([0xaa; 8], addr(1), t0), Ok(Pulled::New));
        assert!(g.address(&[0xbb; 8]).is_none());
    }
}
