//! Why an MQTT connection ended, as the session reports and logs it.

use rumqttc::{ClientError, ConnectReturnCode, ConnectionError, StateError};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    /// Boxed: rumqttc's error is large, and every `Result` carrying this type would be too.
    #[error(transparent)]
    Connection(Box<ConnectionError>),
    #[error("event loop ended")]
    EventLoopEnded,
    #[error("cannot queue the status message: {0}")]
    QueueStatus(#[source] ClientError),
    #[error("cannot queue the command subscription: {0}")]
    QueueSubscribe(#[source] ClientError),
}

impl From<ConnectionError> for SessionError {
    fn from(e: ConnectionError) -> SessionError {
        match e {
            ConnectionError::ConnectionRefused(code) => SessionError::Refused(code),
            other => SessionError::Connection(Box::new(other)),
        }
    }
}

/// The size of the broker's packet, when `e` is rumqttc refusing one over
/// `MAX_INCOMING_PACKET` (`commands::intake`).
pub(super) fn oversized(e: &SessionError) -> Option<usize> {
    match e {
        SessionError::Connection(c) => match c.as_ref() {
            ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
            )) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}
