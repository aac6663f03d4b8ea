//! Northbound: the MQTT session to the city's broker.

pub mod inflight;
pub mod mqtt;
pub mod pace;
mod session_error;
