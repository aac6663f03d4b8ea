//! LoRaWAN devices (SPEC §2 `[lora]`, §3 LoRa profiles, §8 "LoRaWAN", "LoRa commands").
//!
//! Layout: `semtech.rs` (Semtech UDP v2 codec, pure), `server.rs` (LoRaWAN 1.0.x uplinks,
//! joins and downlinks over the `lorawan` crate, pure), `session.rs` (state persisted in
//! the queue's database), `codec.rs` (profile scripts: `decode_uplink`/`encode_downlink`),
//! `udp.rs` (the task that owns the UDP socket), `chirpstack.rs` (the same devices behind
//! an existing network server).

pub mod semtech;
pub mod server;
pub mod session;
