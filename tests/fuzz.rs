//! Property-based fuzz targets (issue 12 item 10) for every parser that takes outside
//! bytes: Modbus TCP/RTU/ASCII replies, Semtech UDP datagrams and LoRaWAN PHYPayloads
//! through the LoRa driver, ChirpStack uplinks, command JSON through the command task,
//! OCPP-J frames, profile and config TOML, and serial frames through the shipped scripts.
//!
//! Each target feeds random bytes and mutations of valid inputs (bit flips, boundary
//! values in length fields, truncation, insertion, splicing) and asserts no panic, a
//! bound on what the parser keeps or returns, and that every rejection is a typed error
//! and, where the path counts, one increment of the counter SPEC §7 names.
//!
//! CI runs proptest's default of 256 cases per target (`PROPTEST_CASES` overrides it);
//! `benches/fuzz.sh` runs the same binary for long on the cabinet build. Uses no
//! `demo` feature, so it builds with `--no-default-features`.

#[path = "fuzz/commands.rs"]
mod commands;
#[path = "fuzz/lora.rs"]
mod lora;
#[path = "fuzz/modbus.rs"]
mod modbus;
#[path = "fuzz/ocpp.rs"]
mod ocpp;
#[path = "common/ocpp_hub.rs"]
mod ocpp_hub;
#[path = "common/profiles.rs"]
mod profiles;
#[path = "fuzz/serial.rs"]
mod serial;
#[path = "fuzz/support.rs"]
mod support;
#[path = "fuzz/toml.rs"]
mod toml_files;
