//! One reachability check (SPEC §11): an ICMP echo or a TCP connect, under a timeout,
//! giving the round-trip time.
//!
//! ICMP uses Linux's unprivileged ICMP sockets (`socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)`): no root and no capability, allowed for the groups in
//! `net.ipv4.ping_group_range` (systemd sets it to every group by default since v243;
//! Debian's procps also does). The kernel sets the echo identifier to the socket's and
//! hands back only the replies to it, so concurrent checks never see each other's.
//! Where the range excludes the daemon's group, a raw ICMP socket is tried instead: it
//! works with `CAP_NET_RAW` (a unit drop-in, README "Reachability"); then the identifier
//! is ours and every reply is checked against it.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

/// Why a check failed; the `Display` is the log line's error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReachError {
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Io(String),
    /// The daemon's group is outside `net.ipv4.ping_group_range`.
    #[error(
        "ICMP sockets not permitted for this group: widen net.ipv4.ping_group_range or use reach = {{ tcp = ... }}"
    )]
    NotPermitted,
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, ReachError> {
    let host_only = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host_only.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host_only, port))
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ReachError::Resolve(host.to_string()))
}

/// A TCP connect to `addr` (`host:port`); the time to the established connection.
pub async fn tcp(addr: &str, timeout: Duration) -> Result<Duration, ReachError> {
    let started = Instant::now();
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| ReachError::Resolve(addr.to_string()))?;
    let target = tokio::time::timeout(timeout, resolve(host, port))
        .await
        .map_err(|_| ReachError::Timeout(timeout.as_millis()))??;
    let left = timeout.saturating_sub(started.elapsed());
    let connect_started = Instant::now();
    match tokio::time::timeout(left, TcpStream::connect(target)).await {
        Ok(Ok(_stream)) => Ok(connect_started.elapsed()),
        Ok(Err(e)) => Err(ReachError::Io(format!("TCP connect to {target}: {e}"))),
        Err(_) => Err(ReachError::Timeout(timeout.as_millis())),
    }
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request with identifier `id` (a ping socket replaces it) and sequence `seq`.
pub fn echo_request(v6: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"polegate-reach");
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Whether `reply` is the echo reply to sequence `seq` (and identifier `id` when given).
pub fn is_reply(v6: bool, reply: &[u8], id: Option<u16>, seq: u16) -> bool {
    reply.len() >= 8
        && reply[0] == if v6 { 129 } else { 0 }
        && reply[6..8] == seq.to_be_bytes()
        && id.is_none_or(|id| reply[4..6] == id.to_be_bytes())
}

/// What an IPv4 raw socket hands over: the IP header, then the ICMP message.
fn strip_ipv4_header(packet: &[u8]) -> &[u8] {
    let ihl = packet.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    packet.get(ihl..).unwrap_or(&[])
}

/// A ping socket, else (with CAP_NET_RAW) a raw ICMP socket; true when raw.
fn icmp_socket(domain: Domain, proto: Protocol) -> Result<(Socket, bool), ReachError> {
    let denied = |e: &std::io::Error| {
        matches!(e.kind(), std::io::ErrorKind::PermissionDenied)
            || e.raw_os_error() == Some(libc::EPERM)
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, false)),
        Err(e) if denied(&e) => match Socket::new(domain, Type::RAW, Some(proto)) {
            Ok(s) => Ok((s, true)),
            Err(e) if denied(&e) => Err(ReachError::NotPermitted),
            Err(e) => Err(ReachError::Io(format!("ICMP socket: {e}"))),
        },
        Err(e) => Err(ReachError::Io(format!("ICMP socket: {e}"))),
    }
}

/// An ICMP echo to `host`; the round-trip time of its reply.
pub async fn icmp(host: &str, seq: u16, timeout: Duration) -> Result<Duration, ReachError> {
    let deadline = Instant::now() + timeout;
    let target = tokio::time::timeout_at(deadline, resolve(host, 0))
        .await
        .map_err(|_| ReachError::Timeout(timeout.as_millis()))??;
    let v6 = target.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (socket, raw) = icmp_socket(domain, proto)?;
    let id = fastrand::u16(..);
    socket
        .set_nonblocking(true)
        .map_err(|e| ReachError::Io(format!("ICMP socket: {e}")))?;
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| ReachError::Io(format!("ICMP socket: {e}")))?;
    let started = Instant::now();
    socket
        .send_to(&echo_request(v6, id, seq), target)
        .await
        .map_err(|e| ReachError::Io(format!("ICMP echo to {target}: {e}")))?;
    let mut buf = [0u8; 1500];
    loop {
        match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
            Err(_) => return Err(ReachError::Timeout(timeout.as_millis())),
            Ok(Err(e)) => return Err(ReachError::Io(format!("ICMP from {target}: {e}"))),
            Ok(Ok((n, from))) => {
                let (msg, want_id) = match (raw, v6) {
                    (true, false) => (strip_ipv4_header(&buf[..n]), Some(id)),
                    (true, true) => (&buf[..n], Some(id)),
                    (false, _) => (&buf[..n], None),
                };
                if from.ip() == target.ip() && is_reply(v6, msg, want_id, seq) {
                    return Ok(started.elapsed());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum_and_replies_match_their_sequence() {
        let p = echo_request(false, 0x1234, 7);
        assert_eq!(p[0], 8);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        let mut reply = p.clone();
        reply[0] = 0;
        assert!(is_reply(false, &reply, None, 7));
        assert!(is_reply(false, &reply, Some(0x1234), 7));
        assert!(
            !is_reply(false, &reply, Some(0x4321), 7),
            "another socket's reply"
        );
        assert!(!is_reply(false, &reply, None, 8));
        assert!(!is_reply(false, &p, None, 7), "a request is not a reply");
        assert!(!is_reply(false, &reply[..5], None, 7));
        let mut ip = vec![0x45u8; 20];
        ip.extend_from_slice(&reply);
        assert_eq!(strip_ipv4_header(&ip), &reply[..]);
        assert!(strip_ipv4_header(&[0x4f]).is_empty());
    }
}
