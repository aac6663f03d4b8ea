//! # polegate
//!
//! A street-cabinet gateway daemon: polls and listens to pole equipment (Modbus, serial
//! line protocols, LoRaWAN), turns every reading into one normalized MQTT event shape,
//! keeps each event in an on-disk queue until the broker acknowledges it, and writes the
//! control room's commands back to the devices.
//!
//! ## Layout and data flow
//! ```text
//! southbound (one task per connection) --Reading--> pipeline (deadband, heartbeat,
//!   seq, ts, JSON) --Record--> buffer::Queue (sled, durable) --> northbound::mqtt
//!   (in-flight window, PUBACK deletes, paced replay)
//! ```
//! - [`model`]: kinds, values, timestamps, event payloads and topics.
//! - [`profile`]: equipment profiles, vocabulary, register codecs.
//! - [`config`]: TOML + conf.d + environment, validation with key paths.
//! - [`buffer`]: the durable queue.
//! - [`pipeline`]: reporting rules, stamping and queueing events.
//! - [`southbound`]: device drivers.
//! - [`script`]: the sandboxed Rhai engine of serial and LoRa profiles.
//! - [`northbound`]: the MQTT session.
//! - [`app`]: the supervisor that wires them and shuts them down in order.
//! - [`cli`]: the command line.
//! - [`demo`]: simulators and the embedded broker of `polegate demo`.
#![forbid(unsafe_code)]

pub mod app;
pub mod buffer;
pub mod cli;
pub mod commands;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod http;
pub mod model;
pub mod northbound;
pub mod ops;
pub mod pipeline;
pub mod profile;
pub mod script;
pub mod southbound;
