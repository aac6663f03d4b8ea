//! Northbound: the MQTT session to the city's broker.

pub mod inflight;
pub mod mqtt;
pub mod pace;
pub mod tls;
