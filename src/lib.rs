//! # polegate
//!
//! A street-cabinet gateway daemon: polls and listens to pole equipment (Modbus, serial
//! line protocols, LoRaWAN), turns every reading into one normalized MQTT event shape,
//! keeps each event in an on-disk queue until the broker acknowledges it, and writes the
//! control room's commands back to the devices.
//!
//! ## Layers
//! Top-level modules point one way, lowest first; a module uses only modules of a lower
//! line (`tests/layers.rs` fails on any other import, so no cycle can come back):
//! ```text
//! model, ops          values, kinds, device link state, commands and results, payloads
//!                     and topics (pure) | counters, logging, backoff, token bucket,
//!                     failure log, sd_notify and watchdog
//! script              the sandboxed Rhai engine of serial and LoRa profiles
//! profile             equipment profiles: loading, vocabulary, register conversions
//! config              TOML + conf.d + environment, validation with key paths
//! buffer              the durable queue (sled) and the key-value stores beside it
//! pipeline            reporting rules (deadband, heartbeat), seq + ts, into the queue
//! southbound,         device drivers (Modbus TCP/RTU/ASCII, serial lines, LoRaWAN,
//!                     OCPP, SNMP agents) and reachability checks (ICMP, TCP)
//!   commands          validation, dedup, rate limit, routing to the owning driver
//! schedule            lighting programs: sun and clock times, overrides, clock trust
//! northbound          the MQTT session: in-flight window, PUBACK deletes, paced replay
//! app                 the supervisor: builds everything, reloads by diff, stops in order
//! demo                simulators and the embedded broker of `polegate demo`
//! cli                 the command line: subcommands, exit codes, buffer, probe
//! ```
//!
//! ## Data paths
//! ```text
//! register -> PUBACK:
//!   southbound driver (one bus task per connection or bus, `southbound::bus`, with the
//!   protocol plugged in: scheduled block reads under timeouts, decode + scale)
//!   --Input::Reading--> pipeline (deadband, heartbeat, seq,
//!   ts, JSON body encoded once) --Record--> buffer::Queue (sled, written before publish)
//!   --> northbound::mqtt (QoS 1 in the in-flight window, `historical` flag added as a
//!   typed delivery choice) --PUBACK--> the record is deleted
//!
//! command -> write -> result:
//!   broker --P/G/D/cmd--> northbound::mqtt --CommandIn--> commands (shape, device,
//!   dedup, expiry, rate limit, online, every point) --WriteRequest--> the owning
//!   driver's inbox (runs between polls, reads back) --WriteOutcome--> commands (a
//!   refusal anywhere is a `model::command::Refusal`: the result's `error` and `code`)
//!   --Input::CmdResult--> pipeline --> queue --> P/G/D/cmd/result (and a telemetry
//!   event with the read-back values)
//! ```
// One audited `unsafe` call: `adjtimex` in schedule/clock.rs (SPEC §10 clock trust).
#![deny(unsafe_code)]

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
pub mod schedule;
pub mod script;
pub mod southbound;
