//! The embedded broker against a real rumqttc client: it starts on a free port and
//! delivers QoS 1, retained and persistent-session traffic the way the gateway needs.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS};
use tokio::time::timeout;

use super::*;

/// Bound on waiting for one expected packet.
const WAIT: Duration = Duration::from_secs(5);

/// rumqttd cannot be stopped, so every test shares one broker.
fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| match start(SocketAddr::from(([127, 0, 0, 1], 0))) {
        Ok(broker) => broker,
        Err(err) => panic!("{err}"),
    })
}

fn connect(id: &str, clean: bool) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker().port());
    options.set_clean_session(clean);
    options.set_keep_alive(Duration::from_secs(5));
    // rumqttc defaults to 10 KiB packets both ways; match the broker's limit instead.
    options.set_max_packet_size(2 * MAX_PAYLOAD, 2 * MAX_PAYLOAD);
    AsyncClient::new(options, 16)
}

/// Polls `events` until `pick` returns something, under [`WAIT`].
async fn wait_for<T>(
    events: &mut EventLoop,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let found = timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(err) => panic!("waiting for {what}: {err}"),
            }
        }
    })
    .await;
    match found {
        Ok(found) => found,
        Err(_) => panic!("no {what} within {WAIT:?}"),
    }
}

async fn conn_ack(events: &mut EventLoop) -> bool {
    wait_for(events, "ConnAck", |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.session_present),
        _ => None,
    })
    .await
}

async fn sub_ack(events: &mut EventLoop) {
    wait_for(events, "SubAck", |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_))).then_some(())
    })
    .await;
}

async fn publish_on(events: &mut EventLoop, topic: &str) -> Publish {
    wait_for(events, topic, |e| match e {
        Event::Incoming(Packet::Publish(p)) if p.topic == topic => Some(p.clone()),
        _ => None,
    })
    .await
}

/// Publishes once at QoS 1 and waits for the PUBACK, as a real publisher does: a connection
/// that drops before the PUBACK means publishing again on a new one. (rumqttd reuses
/// connection ids, and the late teardown of a client that just left can close the next
/// connection given the same id; the broker log shows it as `router-drop`.)
async fn publish_qos1(id: &str, topic: &str, payload: &str, retain: bool) {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        match timeout(WAIT, publish_qos1_once(id, topic, payload, retain)).await {
            Ok(Ok(())) => return,
            Ok(Err(err)) if attempt < ATTEMPTS => {
                eprintln!("publish on {topic}: connection lost before its PUBACK ({err}); again");
            }
            Ok(Err(err)) => panic!("publish on {topic}: {err} ({ATTEMPTS} attempts)"),
            Err(_) => panic!("publish on {topic}: no PUBACK within {WAIT:?}"),
        }
    }
}

async fn publish_qos1_once(
    id: &str,
    topic: &str,
    payload: &str,
    retain: bool,
) -> Result<(), rumqttc::ConnectionError> {
    let (client, mut events) = connect(id, true);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::PubAck(_)) = events.poll().await? {
            break;
        }
    }
    client.disconnect().await.unwrap();
    while !matches!(events.poll().await?, Event::Outgoing(Outgoing::Disconnect)) {}
    Ok(())
}

#[test]
fn the_broker_reports_the_free_port_it_listens_on_and_its_url() {
    let broker = broker();
    assert_ne!(broker.port(), 0);
    assert!(TcpStream::connect(broker.addr()).is_ok());
    assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{}", broker.port()));
}

#[test]
fn starting_on_a_port_in_use_fails_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    match start(addr) {
        Err(BrokerError::Bind { addr: failed, .. }) => assert_eq!(failed, addr),
        other => panic!("expected a bind error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subscriber_receives_a_qos1_publish() {
    let (client, mut events) = connect("qos1-sub", true);
    conn_ack(&mut events).await;
    client
        .subscribe("pg/test/qos1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub_ack(&mut events).await;
    let payload = "x".repeat(100 * 1024);
    client
        .publish("pg/test/qos1/a", QoS::AtLeastOnce, false, payload.clone())
        .await
        .unwrap();
    let received = publish_on(&mut events, "pg/test/qos1/a").await;
    assert_eq!(received.qos, QoS::AtLeastOnce);
    assert_eq!(
        received.payload.len(),
        payload.len(),
        "100 KiB payloads pass"
    );
}

#[tokio::test]
async fn a_retained_qos1_message_reaches_a_later_subscriber_with_the_retain_flag() {
    publish_qos1("retain-pub", "pg/test/retained/state", "online", true).await;
    let (client, mut events) = connect("retain-sub", true);
    conn_ack(&mut events).await;
    client
        .subscribe("pg/test/retained/+", QoS::AtLeastOnce)
        .await
        .unwrap();
    let received = publish_on(&mut events, "pg/test/retained/state").await;
    assert!(received.retain);
    assert_eq!(&received.payload[..], b"online");
}

#[tokio::test]
async fn a_persistent_session_keeps_its_subscription_and_queues_qos1_while_away() {
    let (client, mut events) = connect("persistent-sub", false);
    conn_ack(&mut events).await;
    client
        .subscribe("pg/test/persistent/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    sub_ack(&mut events).await;
    client.disconnect().await.unwrap();
    wait_for(&mut events, "Disconnect", |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect)).then_some(())
    })
    .await;
    drop((client, events));

    publish_qos1("persistent-pub", "pg/test/persistent/cmd", "dim 40", false).await;

    // Same client id, no new subscription: the session must carry both. A connection the
    // broker drops early (see `publish_qos1`) is retried: the session keeps the message.
    for attempt in 1.. {
        let (_client, mut events) = connect("persistent-sub", false);
        let received = timeout(WAIT, async {
            let mut session_present = None;
            loop {
                match events.poll().await? {
                    Event::Incoming(Packet::ConnAck(ack)) => {
                        session_present = Some(ack.session_present)
                    }
                    Event::Incoming(Packet::Publish(p)) if p.topic == "pg/test/persistent/cmd" => {
                        return Ok::<_, rumqttc::ConnectionError>((session_present, p));
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("the queued command within WAIT");
        match received {
            Ok((session_present, p)) => {
                assert_eq!(
                    session_present,
                    Some(true),
                    "session_present after a clean_session=false reconnect"
                );
                assert_eq!(&p.payload[..], b"dim 40");
                return;
            }
            Err(err) if attempt < 3 => eprintln!("persistent-sub: connection lost ({err}); again"),
            Err(err) => panic!("persistent-sub: {err} (3 attempts)"),
        }
    }
}
