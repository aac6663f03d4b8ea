//! Process-wide error and activity counters, shared by every task and published in the
//! `stats` event. Plain atomics: incrementing one never blocks a driver.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Error counters, published under `stats.errors` with these names.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub $name: AtomicU64,)*
            /// Events acknowledged by the broker (`stats.published`).
            pub published: AtomicU64,
        }

        impl Counters {
            /// `(name, value)` of every error counter, in declaration order.
            pub fn errors(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Relaxed)),)*]
            }
        }
    };
}

counters!(
    modbus_timeout,
    modbus_exception,
    modbus_malformed,
    modbus_transport,
    modbus_crc_error,
    modbus_stray_frame,
    connect_failed,
    decode_error,
    unknown_enum,
    poll_overrun,
    buffer_error,
    buffer_corrupt_recovered,
    mqtt_connection_lost,
    command_dropped,
    reload_failed,
    script_error,
    serial_frame_error,
    serial_timeout,
    serial_port_error,
    serial_unattributed,
    lora_malformed,
    lora_bad_mic,
    lora_replay,
    lora_unknown_device,
    lora_mac_ignored,
);

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}
