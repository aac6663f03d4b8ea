//! What the MQTT session does with the event loop's events: the ConnAck (status,
//! subscription), commands, packet ids and PUBACKs, and the clean stop's DISCONNECT; the
//! task that polls the event loop ([`poll_events`]). PUBACKs are collected over one turn
//! of the session loop (up to `EVENT_BATCH` events) and their records removed from the
//! queue together by [`Session::settle`].

use super::{Conn, EVENT_BATCH, STOP_DEADLINE, Session, SessionError};
use crate::model::now_ms;
use crate::northbound::inflight::{InFlight, Sent};
use crate::ops::backoff::Backoff;
use crate::ops::counters::Counters;
use crate::ops::failure_log::{FailureLog, LogAction};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, QoS};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;
use tokio::time::Instant;

impl Session {
    /// Handles `first` and what else the event loop has already forwarded (up to
    /// EVENT_BATCH); the error that ends the connection, if one came.
    pub(super) fn on_events(
        &self,
        first: Option<Result<Event, ConnectionError>>,
        ev_rx: &mut mpsc::Receiver<Result<Event, ConnectionError>>,
        client: &AsyncClient,
        c: &mut Conn,
        backoff: &mut Backoff,
        fail_log: &mut FailureLog,
    ) -> Option<SessionError> {
        let mut next = first;
        let mut handled = 0;
        loop {
            match next {
                None => return Some(SessionError::EventLoopEnded),
                Some(Err(e)) => return Some(e.into()),
                Some(Ok(ev)) => {
                    if let Err(e) = self.on_event(ev, client, c, backoff, fail_log) {
                        return Some(e);
                    }
                }
            }
            handled += 1;
            if handled == EVENT_BATCH {
                // The rest stays in the channel for the next turn.
                return None;
            }
            next = match ev_rx.try_recv() {
                Ok(ev) => Some(ev),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
        }
    }

    /// Removes the records acknowledged this turn from the queue.
    pub(super) fn settle(&self, c: &mut Conn) {
        if c.acked.is_empty() {
            return;
        }
        self.queue.ack_many(&c.acked);
        self.counters
            .published
            .fetch_add(c.acked.len() as u64, Relaxed);
        c.acked.clear();
    }

    fn on_event(
        &self,
        ev: Event,
        client: &AsyncClient,
        c: &mut Conn,
        backoff: &mut Backoff,
        fail_log: &mut FailureLog,
    ) -> Result<(), SessionError> {
        match ev {
            Event::Incoming(Incoming::ConnAck(_)) => {
                c.connected = true;
                c.connack_ms = now_ms();
                c.flight = InFlight::new();
                backoff.reset();
                self.state.connected.store(true, Relaxed);
                let backlog = self.queue.len();
                match fail_log.success() {
                    LogAction::Recovered { count } => {
                        tracing::info!(broker = %self.settings.mqtt.broker.url, backlog, failed_attempts = count, "MQTT broker connected again")
                    }
                    _ => {
                        tracing::info!(broker = %self.settings.mqtt.broker.url, backlog, "MQTT broker connected")
                    }
                }
                // Subscribe on every ConnAck: a broker without our session forgot it.
                // Before the online status: a broker handles a connection's packets in
                // order, so whoever sees "online" can send commands that will arrive.
                if self.settings.commands.is_some() {
                    client
                        .try_subscribe(self.topics.command_filter(), QoS::AtLeastOnce)
                        .map_err(SessionError::QueueSubscribe)?;
                }
                client
                    .try_publish(
                        self.topics.status(),
                        QoS::AtLeastOnce,
                        true,
                        self.status(true),
                    )
                    .map_err(SessionError::QueueStatus)?;
                c.flight.requested(Sent::Unqueued);
                self.publish_schedule(client, c)?;
            }
            Event::Incoming(Incoming::Publish(p)) => {
                if let (Some(tx), Some(dev)) = (
                    &self.settings.commands,
                    self.topics.command_device(&p.topic),
                ) {
                    // No "accepted again" line: under a flood accepts and drops
                    // alternate, and each recovery would re-arm the first line. One line
                    // per connection, then a summary every few minutes.
                    if let Err(e) = tx.offer(dev, &p.payload, p.retain) {
                        Counters::inc(&self.counters.command_dropped);
                        c.drops.on_failure(
                            std::time::Instant::now(),
                            || tracing::warn!(topic = %p.topic, error = %e, "command dropped; further drops are counted (command_dropped) and summarized"),
                            |count| tracing::warn!(topic = %p.topic, error = %e, dropped = count, "commands still being dropped"),
                        );
                    }
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                c.flight.sent(pkid);
                c.written.insert(pkid, Instant::now());
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(at) = c.written.remove(&ack.pkid) {
                    self.counters.timings.puback(at.elapsed());
                }
                if let Some(seq) = c.flight.acked(ack.pkid) {
                    c.acked.push(seq);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Clean stop: retained offline status, then DISCONNECT, bounded by STOP_DEADLINE.
    pub(super) async fn stop(
        &self,
        client: &AsyncClient,
        ev_rx: &mut mpsc::Receiver<Result<Event, ConnectionError>>,
    ) {
        if client
            .try_publish(
                self.topics.status(),
                QoS::AtLeastOnce,
                true,
                self.status(false),
            )
            .is_err()
        {
            return;
        }
        let _ = client.try_disconnect();
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
                Ok(Some(Ok(Event::Outgoing(Outgoing::Disconnect)))) | Ok(None) | Err(_) => break,
                Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        tracing::info!("MQTT session closed");
    }
}

/// Forwards the event loop's events. After the error that ends the connection it keeps
/// the event loop (and so the client's request channel) alive until the session lets go:
/// the session may still be handling the events before the error (a ConnAck queues the
/// status), and must then see that error (an oversized packet), not a closed channel.
pub(super) async fn poll_events(
    mut el: EventLoop,
    tx: mpsc::Sender<Result<Event, ConnectionError>>,
) {
    loop {
        let r = el.poll().await;
        let failed = r.is_err();
        if tx.send(r).await.is_err() {
            return;
        }
        if failed {
            tx.closed().await;
            return;
        }
    }
}
