//! The MQTT session (SPEC §5). The sled queue is the only source of truth:
//! - each queued record is published QoS 1 within a window of `max_inflight`;
//! - rumqttc's `publish` only means *queued*, so each request is paired with the packet id
//!   seen in `Event::Outgoing(Outgoing::Publish(pkid))` (emitted in request order) and the
//!   record is deleted only on `Incoming::PubAck(pkid)`;
//! - a lost connection throws away the client *and* its event loop (rumqttc would
//!   otherwise replay its own stale in-flight copies ahead of ours, out of `seq` order) and
//!   the next connection rewinds to the oldest unacknowledged `seq`;
//! - replay is paced by `replay_rate`; records created before the current connection came
//!   up are published with `"historical": true` (a [`Delivery`] flag: the queued JSON is
//!   never edited).
//!
//! The pairing and the rewind are [`InFlight`]'s, pure and property-tested.
//!
//! A packet from the broker over [`MAX_INCOMING_PACKET`] (an oversized `cmd`, SPEC §7)
//! ends the connection: rumqttc cannot skip it. The persistent session is kept and the
//! next connection alone reads packets up to that packet's size (at most
//! [`MAX_WIDENED_PACKET`]), so the broker's redelivery of it arrives, is refused by the
//! command task and acknowledged, and every command queued behind it is delivered. Only
//! a packet over [`MAX_WIDENED_PACKET`] is discarded with a clean session (the commands
//! the broker held are then lost; counted in `command_dropped` and logged). MQTT 5's
//! Maximum Packet Size would let the broker drop it alone, but needs an MQTT 5 broker
//! (the README, "Oversized commands", says why the session stays on 3.1.1).
//!
//! The event loop is polled in its own task and its events forwarded over a bounded
//! channel, so the session logic only ever awaits cancel-safe futures.

use super::inflight::{InFlight, Sent};
use super::pace::Pacer;
pub use super::session_error::SessionError;
use super::session_error::oversized;
use crate::buffer::Queue;
use crate::commands::IntakeTx;
use crate::commands::intake::MAX_INCOMING_PACKET;
use crate::config::MqttCfg;
use crate::model::now_ms;
use crate::model::payload::{self, Delivery};
use crate::model::topic::Topics;
use crate::ops::backoff::{Backoff, boot_delay, host_uptime};
use crate::ops::counters::Counters;
use crate::ops::failure_log::FailureLog;
use crate::ops::tls;
use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, QoS, Transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Events forwarded from the event-loop task.
const EVENT_CAPACITY: usize = 256;
/// Events handled per turn of the session loop before the PUBACKs among them are applied
/// to the queue in one go and the window is refilled (a draining backlog delivers them
/// faster than one turn each).
const EVENT_BATCH: usize = 128;
#[path = "session_events.rs"]
mod session_events;
use session_events::poll_events;

/// How long a clean stop waits for the offline status to leave.
const STOP_DEADLINE: Duration = Duration::from_millis(2000);

/// The largest packet a reconnect reads to get past an oversized one (memory for it is
/// held once, for that connection).
pub const MAX_WIDENED_PACKET: usize = 16 * 1024 * 1024;

/// How the next connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Normal,
    /// Keep the session, read packets up to this size (an oversized one is redelivered).
    Widened(usize),
    /// A clean session once, dropping what the broker holds for us.
    Discard,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub mqtt: MqttCfg,
    pub gateway: String,
    /// Enabled devices, for the `status` payload (updated on reload).
    pub devices: Arc<std::sync::atomic::AtomicUsize>,
    /// Where `P/G/+/cmd` payloads go; None when `commands.enabled = false` (not subscribed).
    pub commands: Option<IntakeTx>,
}

/// Shared view of the session for status lines and tests.
#[derive(Debug, Default)]
pub struct SessionState {
    pub connected: AtomicBool,
}

/// How often an idle session still turns its loop (liveness for the watchdog).
const IDLE_TICK: Duration = Duration::from_secs(1);

pub struct Session {
    heartbeat: Option<crate::ops::notify::Heartbeat>,
    settings: SessionSettings,
    topics: Topics,
    queue: Queue,
    wake: Arc<Notify>,
    counters: Arc<Counters>,
    state: Arc<SessionState>,
    /// The retained `P/G/schedule` payload (SPEC §10), when schedules run.
    schedule: Option<ScheduleRx>,
}

/// The latest `P/G/schedule` payload; QoS 1, retained, not buffered.
pub type ScheduleRx = tokio::sync::watch::Receiver<Option<Arc<Vec<u8>>>>;

enum Ended {
    Shutdown { connected: bool },
    Lost(SessionError),
}

struct Conn {
    connected: bool,
    connack_ms: u64,
    flight: InFlight,
    pace_until: Option<Instant>,
    /// When each packet id was written, for the publish → PUBACK histogram.
    written: std::collections::HashMap<u16, Instant>,
    /// Seqs whose PUBACK came in this turn, removed from the queue at its end.
    acked: Vec<u64>,
    /// Commands the intake refused (full, oversized): one line when it starts, summaries.
    drops: FailureLog,
}

impl Session {
    pub fn new(
        settings: SessionSettings,
        queue: Queue,
        wake: Arc<Notify>,
        counters: Arc<Counters>,
    ) -> (Session, Arc<SessionState>) {
        let state = Arc::new(SessionState::default());
        Session::with_state(settings, queue, wake, counters, state)
    }

    /// Like `new`, reporting into an existing state (kept across session restarts).
    pub fn with_state(
        settings: SessionSettings,
        queue: Queue,
        wake: Arc<Notify>,
        counters: Arc<Counters>,
        state: Arc<SessionState>,
    ) -> (Session, Arc<SessionState>) {
        (
            Session {
                heartbeat: None,
                topics: Topics::new(&settings.mqtt.topic_prefix, &settings.gateway),
                settings,
                queue,
                wake,
                counters,
                state: state.clone(),
                schedule: None,
            },
            state,
        )
    }

    /// Publishes the lighting schedules' state on `P/G/schedule` at each connect and
    /// whenever it changes.
    pub fn with_schedule(mut self, rx: ScheduleRx) -> Session {
        self.schedule = Some(rx);
        self
    }

    /// Publishes the current `P/G/schedule` payload, if any.
    fn publish_schedule(&self, client: &AsyncClient, c: &mut Conn) -> Result<(), SessionError> {
        let Some(body) = self.schedule.as_ref().and_then(|r| r.borrow().clone()) else {
            return Ok(());
        };
        client
            .try_publish(
                self.topics.schedule(),
                QoS::AtLeastOnce,
                true,
                body.to_vec(),
            )
            .map_err(SessionError::QueueStatus)?;
        c.flight.requested(Sent::Unqueued);
        Ok(())
    }

    /// Reports liveness through `hb` (gates the systemd watchdog).
    pub fn with_heartbeat(mut self, hb: crate::ops::notify::Heartbeat) -> Session {
        self.heartbeat = Some(hb);
        self
    }

    fn beat(&self) {
        if let Some(hb) = &self.heartbeat {
            hb.beat();
        }
    }

    /// Sleeps `d` unless cancelled first, beating meanwhile; false when cancelled.
    async fn sleep_or_cancel(&self, d: Duration, cancel: &CancellationToken) -> bool {
        let end = Instant::now() + d;
        loop {
            self.beat();
            let now = Instant::now();
            if now >= end {
                return true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep((end - now).min(IDLE_TICK)) => {}
            }
        }
    }

    fn status(&self, online: bool) -> Vec<u8> {
        let health = self.queue.health().get();
        payload::status(
            online,
            now_ms(),
            self.settings.devices.load(Relaxed),
            health.reason(),
        )
    }

    /// `next`: see [`Next`]. The TLS files are read again for each connection (a renewed certificate is picked
    /// up), on the blocking pool: file reads do not belong on the async workers.
    async fn options(&self, next: Next) -> Result<MqttOptions, tls::TlsError> {
        let m = &self.settings.mqtt;
        let mut o = MqttOptions::new(m.client_id.clone(), m.broker.host.clone(), m.broker.port);
        o.set_keep_alive(Duration::from_secs(m.keep_alive_s.max(5)));
        // With commands, a persistent session lets the broker keep commands published
        // while the gateway was away (the client id is stable).
        o.set_clean_session(self.settings.commands.is_none() || next == Next::Discard);
        o.set_inflight(m.max_inflight.saturating_add(4));
        o.set_request_channel_capacity(usize::from(m.max_inflight) + 16);
        let incoming = match next {
            Next::Widened(n) => n.max(MAX_INCOMING_PACKET),
            _ => MAX_INCOMING_PACKET,
        };
        o.set_max_packet_size(incoming, 1024 * 1024);
        if let Some((user, password)) = m.broker.credentials() {
            o.set_credentials(user, password);
        }
        o.set_last_will(LastWill::new(
            self.topics.status(),
            self.status(false),
            QoS::AtLeastOnce,
            true,
        ));
        if m.broker.tls {
            let files = m.clone();
            let cfg = tokio::task::spawn_blocking(move || tls::client_config(files.tls_files()))
                .await
                .map_err(|e| tls::TlsError::Task(e.to_string()))??;
            o.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(cfg),
            ));
        }
        Ok(o)
    }

    /// Runs until `cancel`; then publishes the offline status and disconnects.
    pub async fn run(self, cancel: CancellationToken) {
        let m = &self.settings.mqtt;
        let mut backoff = Backoff::new(
            Duration::from_millis(m.reconnect_min_ms),
            Duration::from_millis(m.reconnect_max_ms),
        );
        let mut fail_log = FailureLog::default();
        let delay = boot_delay(
            Duration::from_millis(m.connect_delay_max_ms),
            host_uptime().await,
        );
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "host just booted: delaying the first MQTT connect"
            );
            if !self.sleep_or_cancel(delay, &cancel).await {
                return;
            }
        }
        // Set when the broker sent a packet over MAX_INCOMING_PACKET (see `oversized`).
        let mut next = Next::Normal;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let opts = match self.options(next).await {
                Ok(o) => o,
                Err(e) => {
                    if fail_log.due(std::time::Instant::now()).is_some() {
                        tracing::error!(error = %e, "MQTT TLS setup failed");
                    }
                    if !self.sleep_or_cancel(backoff.next_wait(), &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let (client, el) = AsyncClient::new(opts, usize::from(m.max_inflight) + 16);
            let (ev_tx, mut ev_rx) = mpsc::channel(EVENT_CAPACITY);
            let poller = tokio::spawn(poll_events(el, ev_tx));
            let ended = self
                .connection(&client, &mut ev_rx, &cancel, &mut backoff, &mut fail_log)
                .await;
            if self.state.connected.swap(false, Relaxed) {
                // A connection came up: the widened read or the clean session was had.
                next = Next::Normal;
            }
            match ended {
                Ended::Shutdown { connected } => {
                    if connected {
                        self.stop(&client, &mut ev_rx).await;
                    }
                    poller.abort();
                    return;
                }
                Ended::Lost(e) => {
                    poller.abort();
                    Counters::inc(&self.counters.mqtt_connection_lost);
                    if let Some(size) = oversized(&e) {
                        // The frame cannot be skipped; the persistent session gets it
                        // again on the next connection, which reads it (see the module).
                        if size <= MAX_WIDENED_PACKET && self.settings.commands.is_some() {
                            next = Next::Widened(size);
                            tracing::warn!(
                                broker = %m.broker.url,
                                size,
                                limit = MAX_INCOMING_PACKET,
                                "MQTT packet from the broker over the size limit: reconnecting once with room for it, to refuse it and keep the commands behind it"
                            );
                        } else {
                            next = Next::Discard;
                            Counters::inc(&self.counters.command_dropped);
                            tracing::warn!(
                                broker = %m.broker.url,
                                size,
                                limit = MAX_WIDENED_PACKET,
                                "MQTT packet from the broker over the largest size read: reconnecting with a clean session to discard it (commands the broker held for this gateway are dropped)"
                            );
                        }
                    }
                    fail_log.on_failure(
                        std::time::Instant::now(),
                        || tracing::warn!(broker = %m.broker.url, error = %e, "MQTT broker unreachable; buffering"),
                        |count| tracing::warn!(broker = %m.broker.url, error = %e, attempts = count, "MQTT broker still unreachable"),
                    );
                    if !self.sleep_or_cancel(backoff.next_wait(), &cancel).await {
                        return;
                    }
                }
            }
        }
    }

    async fn connection(
        &self,
        client: &AsyncClient,
        ev_rx: &mut mpsc::Receiver<Result<Event, ConnectionError>>,
        cancel: &CancellationToken,
        backoff: &mut Backoff,
        fail_log: &mut FailureLog,
    ) -> Ended {
        let m = &self.settings.mqtt;
        let mut pacer = Pacer::new(m.replay_rate, m.max_inflight, Instant::now());
        let mut c = Conn {
            connected: false,
            connack_ms: 0,
            flight: InFlight::new(),
            pace_until: None,
            written: Default::default(),
            acked: Vec::with_capacity(EVENT_BATCH),
            drops: FailureLog::default(),
        };
        let mut idle = tokio::time::interval(IDLE_TICK);
        let mut health = self.queue.health().subscribe();
        health.mark_unchanged();
        let mut schedule = self.schedule.clone();
        if let Some(s) = &mut schedule {
            s.mark_unchanged();
        }
        // Waiters kept across turns (a turn per PUBACK batch and per event queued): each
        // registers once, not once per turn.
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let woken = self.wake.notified();
        tokio::pin!(woken);
        loop {
            self.beat();
            let pace_deadline = c.pace_until;
            tokio::select! {
                biased;
                _ = &mut cancelled => return Ended::Shutdown { connected: c.connected },
                ev = ev_rx.recv() => {
                    let ended = self.on_events(ev, ev_rx, client, &mut c, backoff, fail_log);
                    // PUBACKs that came before a lost connection still delete.
                    self.settle(&mut c);
                    if let Some(e) = ended {
                        return Ended::Lost(e);
                    }
                }
                _ = &mut woken, if c.connected => woken.set(self.wake.notified()),
                Ok(()) = health.changed(), if c.connected => {
                    // The retained status says whether the buffer is degraded (SPEC §5).
                    health.mark_unchanged();
                    if let Err(e) = client.try_publish(self.topics.status(), QoS::AtLeastOnce, true, self.status(true)) {
                        return Ended::Lost(SessionError::QueueStatus(e));
                    }
                    c.flight.requested(Sent::Unqueued);
                }
                Some(()) = schedule_changed(&mut schedule), if c.connected => {
                    if let Err(e) = self.publish_schedule(client, &mut c) {
                        return Ended::Lost(e);
                    }
                }
                _ = sleep_opt(pace_deadline), if pace_deadline.is_some() => { c.pace_until = None; }
                _ = idle.tick() => {}
            }
            if c.connected && c.pace_until.is_none() {
                self.fill(client, &mut c, &mut pacer);
            }
        }
    }

    /// Hands queued records to the client up to the window and the pacing budget.
    fn fill(&self, client: &AsyncClient, c: &mut Conn, pacer: &mut Pacer) {
        let max = usize::from(self.settings.mqtt.max_inflight);
        while c.flight.len() < max {
            let want = max - c.flight.len();
            let batch = match self.queue.read_after(c.flight.read_after(), want) {
                Ok(b) => b,
                Err(e) => {
                    Counters::inc(&self.counters.buffer_error);
                    tracing::error!(error = %e, "cannot read the buffer");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            let backlog = self.queue.len() as usize > c.flight.len() + max;
            for (seq, rec) in batch {
                crate::failpoint!("publish-record");
                let now = Instant::now();
                if let Err(wait) = pacer.take(backlog, now) {
                    c.pace_until = Some(now + wait);
                    return;
                }
                let delivery = if rec.created_ms < c.connack_ms {
                    Delivery::Historical
                } else {
                    Delivery::Live
                };
                let payload = rec.payload.publish(delivery);
                if let Err(e) = client.try_publish(rec.topic, QoS::AtLeastOnce, rec.retain, payload)
                {
                    // The request channel is sized above the window; this means the
                    // event loop is gone. The connection error will follow.
                    tracing::debug!(seq, error = %e, "publish not queued");
                    return;
                }
                c.flight.requested(Sent::Record(seq));
            }
        }
    }
}

/// The schedule payload changed; never when there is none.
async fn schedule_changed(rx: &mut Option<ScheduleRx>) -> Option<()> {
    match rx {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

async fn sleep_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
