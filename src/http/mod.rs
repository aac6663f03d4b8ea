//! The read-only HTTP listener of SPEC §6: `/healthz`, `/metrics`, the status page `/`
//! and `/api/status`, for the technician at the cabinet and the operations team.
//!
//! Invariants:
//! - Nothing over HTTP changes anything: any method but GET and HEAD gets 405.
//! - It never delays the pipeline: a request reads atomics, short locks and one queue
//!   record on a blocking thread ([`status::snapshot`]); no lock is held across an await.
//! - A client cannot hold it: at most [`MAX_CONNECTIONS`] at once; when all are taken, a
//!   new connection takes the slot of the oldest one that has not sent its request yet
//!   (`ops::slots`; the idle one is closed and counted as 408), so idle or slow sockets
//!   cannot keep `/healthz` out; only when every slot is serving a request is the new
//!   one closed at once (counted as 503). Headers must arrive within [`HEADER_TIMEOUT`]
//!   and fit in [`MAX_HEADER_BYTES`], a connection lives at most [`CONNECTION_TIMEOUT`]
//!   and serves one request.
//! - With credentials configured every path needs them (HTTP Basic, compared in constant
//!   time); every refusal has its status code and is counted in
//!   `polegate_http_requests_total{code}`.

pub mod metrics;
pub mod page;
pub mod status;

use crate::buffer::Queue;
use crate::config::Transport;
use crate::config::http::Credentials;
use crate::northbound::mqtt::SessionState;
use crate::ops::counters::Counters;
use crate::ops::health::BufferHealth;
use crate::ops::notify::Liveness;
use crate::ops::slots::{Admitted, Slots};
use crate::pipeline::DeviceInfo;
use base64::Engine as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Connections served at once; a status page and a scraper need a handful.
pub const MAX_CONNECTIONS: usize = 16;
/// The request line and headers must arrive within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection's whole life, answer included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Read buffer, which bounds the request head (hyper's minimum is 8 KiB).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Headers in one request.
pub const MAX_HEADERS: usize = 64;

/// One device as the views show it.
#[derive(Debug, Clone)]
pub struct FleetEntry {
    pub info: Arc<DeviceInfo>,
    pub transport: Transport,
}

/// The devices now; the supervisor replaces the list on every reload.
pub type Fleet = Arc<Vec<FleetEntry>>;

/// Everything the views read; each fact has its owner elsewhere.
pub struct Sources {
    pub gateway: String,
    pub started: Instant,
    pub queue: Queue,
    pub counters: Arc<Counters>,
    pub session: Arc<SessionState>,
    pub liveness: Arc<Liveness>,
    pub buffer_health: Arc<BufferHealth>,
    /// A registered task silent for this long is named stalled by `/healthz`.
    pub stall_after: Duration,
    pub fleet: watch::Receiver<Fleet>,
    /// The lighting schedules (SPEC §10), shown when configured.
    pub schedule: Option<Arc<crate::schedule::Shared>>,
}

const CODES: [u16; 9] = [200, 400, 401, 404, 405, 408, 431, 500, 503];

/// Requests by the status code they got.
#[derive(Debug, Default)]
pub struct HttpCounters([AtomicU64; CODES.len()]);

impl HttpCounters {
    fn inc(&self, code: u16) {
        let i = CODES
            .iter()
            .position(|c| *c == code)
            .unwrap_or(CODES.len() - 2);
        self.0[i].fetch_add(1, Relaxed);
    }

    /// `(code, count)` for every code.
    pub fn snapshot(&self) -> Vec<(u16, u64)> {
        CODES
            .iter()
            .zip(self.0.iter())
            .map(|(c, n)| (*c, n.load(Relaxed)))
            .collect()
    }
}

struct App {
    sources: Sources,
    auth: Option<Credentials>,
    counters: HttpCounters,
}

/// A bound listener; run it with [`Server::run`].
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
}

impl Server {
    /// Binds `addr` (port 0 for tests).
    pub async fn bind(
        addr: SocketAddr,
        auth: Option<Credentials>,
        sources: Sources,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server {
            listener,
            app: Arc::new(App {
                sources,
                auth,
                counters: HttpCounters::default(),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let slots = Slots::new(MAX_CONNECTIONS);
        let mut refused_logged = false;
        let mut accept_failing = false;
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and the like: wait a little instead of spinning; one
                        // line when it starts failing, one when it accepts again.
                        if !accept_failing {
                            tracing::warn!(error = %e, "http: accept failed; retrying every 100 ms");
                            accept_failing = true;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if accept_failing {
                tracing::info!("http: accepting connections again");
                accept_failing = false;
            }
            let slot = match slots.admit() {
                Admitted::Free(s) => s,
                Admitted::Evicted(s) => {
                    // The idle connection closes itself (counted as 408 there).
                    s
                }
                Admitted::Full => {
                    self.app.counters.inc(503);
                    if !refused_logged {
                        tracing::warn!(
                            max = MAX_CONNECTIONS,
                            "http: too many connections; closing new ones"
                        );
                        refused_logged = true;
                    }
                    drop(stream);
                    continue;
                }
            };
            refused_logged = false;
            let app = self.app.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let slot = Arc::new(slot);
                let svc_app = app.clone();
                let svc_slot = slot.clone();
                let svc = hyper::service::service_fn(move |req| {
                    // A whole request head arrived: this client is no longer idle.
                    svc_slot.busy();
                    let app = svc_app.clone();
                    async move { Ok::<_, Infallible>(handle(&app, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEADER_BYTES)
                    .max_headers(MAX_HEADERS)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = slot.evicted() => app.counters.inc(408),
                    r = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => match r {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) if e.is_parse_too_large() => app.counters.inc(431),
                        Ok(Err(e)) if e.is_parse() => app.counters.inc(400),
                        Ok(Err(e)) if e.is_timeout() => app.counters.inc(408),
                        Ok(Err(_)) => {} // the client went away
                        Err(_) => app.counters.inc(408),
                    },
                }
            });
        }
    }
}

/// Starts the listener of `[http]` as its own task, if configured. A failed bind is
/// logged and the daemon goes on polling without it.
pub async fn start(
    cfg: &crate::config::http::HttpCfg,
    sources: Sources,
    cancel: CancellationToken,
) -> Option<Started> {
    let addr = cfg.listen?;
    match Server::bind(addr, cfg.auth.clone(), sources).await {
        Ok(server) => {
            let bound = server.local_addr().ok();
            tracing::info!(listen = ?bound, auth = cfg.auth.is_some(), "http: status page and metrics listening");
            Some(Started {
                addr: bound,
                task: tokio::spawn(server.run(cancel)),
            })
        }
        Err(e) => {
            tracing::error!(listen = %addr, error = %e, "http: cannot listen; status page and metrics are off");
            None
        }
    }
}

/// A listening server: where it answers, and its accept loop (which ends only on
/// cancel; the supervisor treats any other end as a task death).
pub struct Started {
    pub addr: Option<SocketAddr>,
    pub task: tokio::task::JoinHandle<()>,
}

fn authorized(auth: &Credentials, req: &Request<Incoming>) -> bool {
    let Some(v) = req.headers().get(header::AUTHORIZATION) else {
        return false;
    };
    let Some((scheme, b64)) = v.to_str().ok().and_then(|s| s.split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", auth.username, auth.password);
    crate::ops::ct_eq(&given, expected.as_bytes())
}

fn reply(code: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut r = route(app, &req).await;
    app.counters.inc(r.status().as_u16());
    if req.method() == Method::HEAD {
        *r.body_mut() = Full::new(Bytes::new());
    }
    r
}

async fn route(app: &Arc<App>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(auth) = &app.auth
        && !authorized(auth, req)
    {
        let mut r = reply(StatusCode::UNAUTHORIZED, TEXT, "credentials required\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"polegate\", charset=\"UTF-8\""),
        );
        return r;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "read-only: GET or HEAD\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    if !matches!(path, "/" | "/api/status" | "/metrics" | "/healthz") {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /, /api/status, /metrics or /healthz\n",
        );
    }
    let snap_app = app.clone();
    let Ok(s) = tokio::task::spawn_blocking(move || status::snapshot(&snap_app.sources)).await
    else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "snapshot failed\n");
    };
    match path {
        "/" => reply(StatusCode::OK, "text/html; charset=utf-8", page::render(&s)),
        "/api/status" => reply(
            StatusCode::OK,
            JSON,
            serde_json::to_vec_pretty(&s).unwrap_or_default(),
        ),
        "/metrics" => reply(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            metrics::render(&s, &app.sources.counters.timings, &app.counters),
        ),
        _ => {
            let body = serde_json::json!({
                "status": if s.stalled.is_empty() { "ok" } else { "stalled" },
                "broker": s.broker,
                "buffer": s.buffer.state,
                "stalled": s.stalled,
            });
            let code = if s.stalled.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, JSON, body.to_string())
        }
    }
}
