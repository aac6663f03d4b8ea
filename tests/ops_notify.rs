//! The sd_notify client speaks the wire protocol systemd expects: one datagram per call,
//! `KEY=VALUE` lines, to a filesystem or an abstract socket, and nothing at all without one.

use polegate::ops::notify::{Notifier, status_line};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a datagram within the timeout");
    String::from_utf8(buf[..n].to_vec()).expect("utf-8")
}

fn listener(path: &std::path::Path) -> UnixDatagram {
    let sock = UnixDatagram::bind(path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock
}

#[test]
fn ready_status_watchdog_reloading_and_stopping_arrive_as_separate_datagrams() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = listener(&path);
    let n = Notifier::with_socket(&path);
    assert!(n.is_enabled());

    n.ready();
    assert_eq!(recv(&sock), "READY=1\n");
    n.status(&status_line(12, 14, 3, true));
    assert_eq!(
        recv(&sock),
        "STATUS=12/14 devices online, 3 buffered, broker connected\n"
    );
    n.watchdog();
    assert_eq!(recv(&sock), "WATCHDOG=1\n");
    n.reloading();
    let reloading = recv(&sock);
    assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "systemd 253+ needs a timestamp with RELOADING=1: {reloading}"
    );
    n.ready();
    assert_eq!(recv(&sock), "READY=1\n");
    n.stopping();
    assert_eq!(recv(&sock), "STOPPING=1\n");
}

#[test]
fn a_multi_line_status_is_sent_as_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("notify.sock");
    let sock = listener(&path);
    Notifier::with_socket(&path).status("a\nb");
    assert_eq!(recv(&sock), "STATUS=a b\n");
}

#[test]
fn an_abstract_socket_named_with_an_at_sign_is_reached() {
    let name = format!("polegate-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    Notifier::with_socket(format!("@{name}")).ready();
    assert_eq!(recv(&sock), "READY=1\n");
}

#[test]
fn a_missing_socket_is_an_error_from_send_but_never_a_panic_from_the_helpers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let n = Notifier::with_socket(tmp.path().join("nobody-listens.sock"));
    assert!(n.send(&[sd_notify::NotifyState::Ready]).is_err());
    n.ready();
    n.watchdog();
}

#[test]
fn an_explicit_watchdog_interval_is_reported() {
    let n = Notifier::with_socket("/nonexistent").with_watchdog(Duration::from_secs(15));
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
}
