//! The `[http]` listener of SPEC §6 through the same entry point as `polegate run`: a
//! Modbus simulator, a real mosquitto, raw TCP clients. Proves `/api/status`, `/metrics`
//! (OpenMetrics, the named series, escaped labels), `/healthz`, Basic auth, that bad
//! input gets a status code and a counter and does not disturb polling, that idle
//! sockets cannot keep `/healthz` out, `check` refusing an open listener, `polegate status` through the real
//! binary, and the status page as rendered by a real headless browser.

use crate::common::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

fn lamp(id: &str, addr: SocketAddr) -> String {
    lamp_device(id, addr, 100)
}

/// Sends `raw` and reads until the server closes; the whole answer as text.
async fn raw(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(req).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("server answers and closes in time");
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Basic {a}\r\n"));
    let a = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes(),
    )
    .await;
    let (head, body) = a.split_once("\r\n\r\n").unwrap_or((&a, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn up() -> (Mosquitto, CancellationToken, Daemon, SocketAddr) {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let setup = Setup::new(broker.port, &lamp("lamp-017", sim.addr()));
    let daemon = Daemon::start(&setup).await;
    std::mem::forget(setup); // the daemon outlives this function; the OS cleans /tmp
    std::mem::forget(sim);
    let addr = daemon.handles.http.expect("http listener on");
    (broker, cancel, daemon, addr)
}

async fn wait_online(addr: SocketAddr) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, _, body) = get(addr, "/api/status", None).await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let d = &v["devices"][0];
        if d["state"] == "online"
            && v["broker"] == "connected"
            && !d["points"].as_array().unwrap().is_empty()
        {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "device online in time: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_healthz_show_the_device_the_broker_and_the_buffer() {
    let (_broker, _c, daemon, addr) = up().await;
    let s = wait_online(addr).await;
    assert_eq!(s["gateway"], "cab-test");
    assert_eq!(s["buffer"]["state"], "ok");
    let d = &s["devices"][0];
    assert_eq!(d["id"], "lamp-017");
    assert_eq!(d["kind"], "lamp");
    assert_eq!(d["profile"], "generic-lamp-modbus");
    assert_eq!(d["transport"], "modbus_tcp");
    assert!(d["address"].as_str().unwrap().ends_with("unit 1"));
    let dim = d["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "dim_level")
        .expect("dim_level");
    assert_eq!(dim["unit"], "%");
    assert!(dim["age_s"].as_f64().unwrap() < 10.0);

    let (code, head, body) = get(addr, "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0")
    );
    assert!(body.trim_end().ends_with("# EOF"));
    assert_eq!(metric(&body, "polegate_up"), Some(1.0));
    assert_eq!(metric(&body, "polegate_broker_connected"), Some(1.0));
    assert_eq!(metric(&body, "polegate_buffer_degraded"), Some(0.0));
    assert_eq!(
        metric(&body, "polegate_devices{state=\"online\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            "polegate_device_online{device=\"lamp-017\",profile=\"generic-lamp-modbus\"}"
        ),
        Some(1.0)
    );
    for series in [
        "polegate_published_total",
        "polegate_buffer_events",
        "polegate_buffer_bytes",
        "polegate_buffer_dropped_total",
        "polegate_buffer_oldest_age_seconds",
        "polegate_errors_total{counter=\"modbus_timeout\"}",
    ] {
        assert!(
            metric(&body, series).is_some(),
            "{series} missing in\n{body}"
        );
    }
    let link = format!(
        "polegate_link_errors_total{{link=\"{}\",counter=\"modbus_timeout\"}}",
        d["address"].as_str().unwrap().split(' ').next().unwrap()
    );
    assert!(metric(&body, &link).is_some(), "{link} missing in\n{body}");
    assert!(
        body.contains("polegate_poll_duration_seconds_bucket{"),
        "{body}"
    );
    assert!(
        body.contains("polegate_publish_ack_seconds_count"),
        "{body}"
    );
    assert!(metric(&body, "polegate_publish_ack_seconds_count").unwrap() > 0.0);

    let (code, _, body) = get(addr, "/healthz", None).await;
    assert_eq!(code, 200);
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["broker"], "connected");
    assert_eq!(h["buffer"], "ok");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_status_code_and_a_counter_and_polling_goes_on() {
    let (_broker, _c, daemon, addr) = up().await;
    wait_online(addr).await;
    let polls = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("polegate_poll_duration_seconds_count{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .expect("poll histogram")
    };
    let before = polls(&get(addr, "/metrics", None).await.2);

    let post = raw(
        addr,
        b"POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get, head"));
    let (code, _, _) = get(addr, "/admin", None).await;
    assert_eq!(code, 404);
    let garbage = raw(addr, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage:?}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = raw(addr, huge.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // A slow client that never finishes its headers is cut off by the header timeout.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut buf))
        .await
        .expect("slow client dropped")
        .ok();

    let (_, _, m) = get(addr, "/metrics", None).await;
    for code in ["400", "404", "405", "408", "431"] {
        let s = format!("polegate_http_requests_total{{code=\"{code}\"}}");
        assert!(
            metric(&m, &s).unwrap_or(0.0) >= 1.0,
            "{s} not counted in\n{m}"
        );
    }
    // Polling went on at its pace (every 100 ms) while the listener was being abused.
    let deadline = tokio::time::Instant::now() + WAIT;
    while polls(&get(addr, "/metrics", None).await.2) < before + 5.0 {
        assert!(tokio::time::Instant::now() < deadline, "polls continue");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = wait_online(addr).await;
    assert_eq!(s["devices"][0]["state"], "online");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_every_path_needs_them_and_wrong_ones_are_refused() {
    let broker = Mosquitto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("http.pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let setup = Setup::new(
        broker.port,
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nusername = \"tech\"\npassword_file = {:?}\n",
            pass.display().to_string()
        ),
    );
    let daemon = Daemon::start(&setup).await;
    let addr = daemon.handles.http.unwrap();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (code, head, _) = get(addr, "/metrics", None).await;
    assert_eq!(code, 401);
    assert!(head.contains("Basic realm=\"polegate\""));
    assert_eq!(get(addr, "/healthz", Some(&b64("tech:wrong"))).await.0, 401);
    assert_eq!(get(addr, "/", Some(&b64("tech:s3cre"))).await.0, 401);
    assert_eq!(get(addr, "/", Some("not base64!")).await.0, 401);
    assert_eq!(
        get(addr, "/api/status", Some(&b64("tech:s3cret"))).await.0,
        200
    );
    let (_, _, m) = get(addr, "/metrics", Some(&b64("tech:s3cret"))).await;
    assert_eq!(
        metric(&m, "polegate_http_requests_total{code=\"401\"}"),
        Some(4.0)
    );
    daemon.stop().await;
}

/// SPEC §7: idle clients cannot hold the slots `/healthz` needs. Every slot is taken by a
/// socket that sent three bytes and nothing more; `/healthz` still answers at once (well
/// inside the header timeout those sockets would otherwise keep their slots for), the
/// oldest idle socket is the one closed, and it is counted (408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_idle_sockets_do_not_keep_healthz_out() {
    let broker = Mosquitto::start().await;
    let setup = Setup::new(broker.port, "");
    let daemon = Daemon::start(&setup).await;
    let addr = daemon.handles.http.unwrap();
    let mut idle = Vec::new();
    for _ in 0..polegate::http::MAX_CONNECTIONS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET").await.unwrap();
        idle.push(s);
    }
    let t0 = tokio::time::Instant::now();
    let (code, _, body) = get(addr, "/healthz", None).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        t0.elapsed() < polegate::http::HEADER_TIMEOUT,
        "answered after {:?}: it waited for an idle slot to time out",
        t0.elapsed()
    );
    // The oldest idle socket gave its slot.
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(1), idle[0].read_to_end(&mut buf))
        .await
        .expect("the oldest idle socket is closed at once");
    assert!(n.map_or(true, |n| n == 0), "it got {buf:?}");
    let (code, _, m) = get(addr, "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(metric(&m, "polegate_http_requests_total{code=\"408\"}").unwrap() >= 1.0);
    drop(idle);
    daemon.stop().await;
}

#[test]
fn check_refuses_a_listener_outside_loopback_without_a_password_file() {
    let setup = Setup::new(1883, "[http]\nlisten = \"0.0.0.0:9180\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_polegate"))
        .args(["check", "--config"])
        .arg(&setup.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("http.listen") && err.contains("password_file"),
        "{err}"
    );
    let off = Setup::new(1883, "[http]\nlisten = \"\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_polegate"))
        .args(["check", "--config"])
        .arg(&off.path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polegate_status_prints_the_running_daemons_view_and_exits_3_when_none_answers() {
    let broker = Mosquitto::start().await;
    let cancel = CancellationToken::new();
    let sim = static_lamp(&cancel).await;
    let port = free_port();
    let setup = Setup::new(
        broker.port,
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\n{}",
            lamp("lamp-017", sim.addr())
        ),
    );
    let daemon = Daemon::start(&setup).await;
    wait_online(daemon.handles.http.unwrap()).await;
    let path = setup.path.clone();
    let status = move |json: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_polegate"));
        c.args(["status", "--config"]).arg(&path);
        if json {
            c.arg("--json");
        }
        c.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (status(false), status(true), status))
        .await
        .unwrap();
    let (text, json, status) = out;
    assert_eq!(text.status.code(), Some(0));
    let t = String::from_utf8_lossy(&text.stdout);
    assert!(
        t.contains("gateway cab-test") && t.contains("broker connected"),
        "{t}"
    );
    assert!(
        t.contains("online") && t.contains("lamp-017") && t.contains("dim_level="),
        "{t}"
    );
    let j: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json is JSON");
    assert_eq!(j["devices"][0]["id"], "lamp-017");
    daemon.stop().await;
    let gone = tokio::task::spawn_blocking(move || status(false))
        .await
        .unwrap();
    assert_eq!(gone.status.code(), Some(3));
    let e = String::from_utf8_lossy(&gone.stderr);
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_browser_renders_the_status_page_with_the_device_its_values_and_units() {
    let (_broker, _c, daemon, addr) = up().await;
    wait_online(addr).await;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(&url)
            .output()
            .expect("chromium is installed (Debian package chromium; .ci/run installs it)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<h1 id=\"gateway\">cab-test</h1>"), "{dom}");
    assert!(dom.contains("id=\"dev-lamp-017\""), "{dom}");
    assert!(
        dom.contains("<span id=\"broker\" class=\"ok\">connected</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("dim_level") && dom.contains(" %</td>"),
        "{dom}"
    );
    assert!(dom.contains("http-equiv=\"refresh\""), "{dom}");
    assert!(
        !dom.contains("src=\"http") && !dom.contains("href=\"http"),
        "no external assets"
    );
    daemon.stop().await;
}
