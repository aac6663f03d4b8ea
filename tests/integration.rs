//! The integration tests: every file of `tests/` (but `common/`) is one module of this
//! single test binary, so the suite links once and the files' tests run side by side
//! (`cargo test` runs binaries one after another). Run one file's tests with
//! `cargo test --test integration <file>::`. `common` is the shared harness: brokers,
//! daemons, simulators, LoRa frames (its module documentation says what is where).
//!
//! A new test file is added here with its `#[path]` (a file of `tests/` is a module of
//! this file, not a binary of its own: `autotests = false` in Cargo.toml).

#[path = "common/mod.rs"]
mod common;

#[path = "buffer_crash.rs"]
mod buffer_crash;
#[path = "buffer_throughput.rs"]
mod buffer_throughput;
#[path = "bus_heartbeat.rs"]
mod bus_heartbeat;
#[path = "cli.rs"]
mod cli;
#[path = "commands.rs"]
mod commands;
#[path = "config_extremes.rs"]
mod config_extremes;
#[path = "demo.rs"]
mod demo;
#[path = "disk_reclaim.rs"]
mod disk_reclaim;
#[path = "durability.rs"]
mod durability;
#[path = "e2e.rs"]
mod e2e;
// The fault-injection points exist only in builds with the `failpoints` feature.
#[cfg(feature = "failpoints")]
#[path = "failpoints.rs"]
mod failpoints;
#[path = "http.rs"]
mod http;
#[path = "kill_loop.rs"]
mod kill_loop;
#[path = "layers.rs"]
mod layers;
#[path = "lora_chirpstack.rs"]
mod lora_chirpstack;
#[path = "lora_commands.rs"]
mod lora_commands;
#[path = "lora_core.rs"]
mod lora_core;
#[path = "lora_crash.rs"]
mod lora_crash;
#[path = "lora_e2e.rs"]
mod lora_e2e;
#[path = "lora_gateways.rs"]
mod lora_gateways;
#[path = "lora_vectors.rs"]
mod lora_vectors;
#[path = "ocpp_check.rs"]
mod ocpp_check;
#[path = "ocpp_cs.rs"]
mod ocpp_cs;
#[path = "ocpp_hostile.rs"]
mod ocpp_hostile;
#[path = "ocpp_proxy.rs"]
mod ocpp_proxy;
#[path = "ops_buffer_cli.rs"]
mod ops_buffer_cli;
#[path = "ops_daemon_notify.rs"]
mod ops_daemon_notify;
#[path = "ops_logging.rs"]
mod ops_logging;
#[path = "ops_notify.rs"]
mod ops_notify;
#[path = "puback_withheld.rs"]
mod puback_withheld;
#[path = "reach.rs"]
mod reach;
#[path = "reload.rs"]
mod reload;
#[path = "replay_batches.rs"]
mod replay_batches;
#[path = "rtu_bus.rs"]
mod rtu_bus;
#[path = "rtu_probe.rs"]
mod rtu_probe;
#[path = "rtu_reconnect.rs"]
mod rtu_reconnect;
#[path = "rtu_sdm120.rs"]
mod rtu_sdm120;
#[path = "rtu_tcp.rs"]
mod rtu_tcp;
#[path = "rtu_unplug.rs"]
mod rtu_unplug;
#[path = "schedule_check.rs"]
mod schedule_check;
#[path = "schedule_live.rs"]
mod schedule_live;
#[path = "schedule_sun.rs"]
mod schedule_sun;
#[path = "serial_pa.rs"]
mod serial_pa;
#[path = "serial_scripts.rs"]
mod serial_scripts;
#[path = "shutdown_writes.rs"]
mod shutdown_writes;
#[path = "snmp.rs"]
mod snmp;
#[path = "snmp_e2e.rs"]
mod snmp_e2e;
#[path = "snmp_probe.rs"]
mod snmp_probe;
#[path = "storage_full.rs"]
mod storage_full;
#[path = "storage_readonly.rs"]
mod storage_readonly;
#[path = "storage_remount.rs"]
mod storage_remount;
#[path = "storage_state.rs"]
mod storage_state;
#[path = "tls.rs"]
mod tls;
