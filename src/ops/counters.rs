//! Process-wide error and activity counters, shared by every task and published in the
//! `stats` event. Plain atomics: incrementing one never blocks a driver.
//!
//! Modbus errors are also counted per link (connection or serial line) and per device
//! ([`ErrorCounts`], published under `stats.links` and `stats.device_errors`). The
//! [`Breakdown`] registry only holds weak references: the counts live as long as the link
//! task that owns them, so a device or link removed by a reload drops out of `stats`
//! (a rebuilt link starts from zero; `stats.errors` never resets).

use crate::ops::lock::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Error counters, published under `stats.errors` with these names.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub $name: AtomicU64,)*
            /// Events acknowledged by the broker (`stats.published`).
            pub published: AtomicU64,
            /// Modbus errors per link and per device.
            pub breakdown: Breakdown,
            /// Poll and PUBACK timing histograms (`/metrics`).
            pub timings: super::timings::Timings,
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
    command_rejected,
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
    lora_gateway_refused,
    ocpp_unknown_charger,
    ocpp_malformed,
    ocpp_rate_limited,
    ocpp_handshake_evicted,
    snmp_timeout,
    snmp_auth_failed,
    snmp_no_such,
    snmp_refused,
    snmp_error,
    reach_failed,
);

impl Counters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }
}

/// A Modbus error counted per link and per device as well as process-wide. The names
/// are those of the process-wide counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusFault {
    Timeout,
    Exception,
    /// A short or garbled reply.
    Malformed,
    Transport,
    CrcError,
    /// A frame for another unit or function, or bytes left on the line.
    StrayFrame,
    /// The link could not be opened (never attributed to a device).
    ConnectFailed,
}

impl ModbusFault {
    pub const ALL: [ModbusFault; 7] = [
        ModbusFault::Timeout,
        ModbusFault::Exception,
        ModbusFault::Malformed,
        ModbusFault::Transport,
        ModbusFault::CrcError,
        ModbusFault::StrayFrame,
        ModbusFault::ConnectFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModbusFault::Timeout => "modbus_timeout",
            ModbusFault::Exception => "modbus_exception",
            ModbusFault::Malformed => "modbus_malformed",
            ModbusFault::Transport => "modbus_transport",
            ModbusFault::CrcError => "modbus_crc_error",
            ModbusFault::StrayFrame => "modbus_stray_frame",
            ModbusFault::ConnectFailed => "connect_failed",
        }
    }

    /// The process-wide counter of this error.
    pub fn process_counter(self, c: &Counters) -> &AtomicU64 {
        match self {
            ModbusFault::Timeout => &c.modbus_timeout,
            ModbusFault::Exception => &c.modbus_exception,
            ModbusFault::Malformed => &c.modbus_malformed,
            ModbusFault::Transport => &c.modbus_transport,
            ModbusFault::CrcError => &c.modbus_crc_error,
            ModbusFault::StrayFrame => &c.modbus_stray_frame,
            ModbusFault::ConnectFailed => &c.connect_failed,
        }
    }
}

/// Modbus error counts of one link or one device.
#[derive(Debug, Default)]
pub struct ErrorCounts([AtomicU64; ModbusFault::ALL.len()]);

impl ErrorCounts {
    pub fn inc(&self, e: ModbusFault) {
        self.0[e as usize].fetch_add(1, Relaxed);
    }

    pub fn get(&self, e: ModbusFault) -> u64 {
        self.0[e as usize].load(Relaxed)
    }

    /// `(name, value)` of every counter, in [`ModbusFault::ALL`] order.
    pub fn all(&self) -> Vec<(&'static str, u64)> {
        ModbusFault::ALL
            .iter()
            .map(|e| (e.name(), self.get(*e)))
            .collect()
    }

    /// `(name, value)` of the counters above zero.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        self.all().into_iter().filter(|(_, v)| *v > 0).collect()
    }
}

/// Counts by name (link name or device id), sorted by name.
pub type Named = Vec<(String, Vec<(&'static str, u64)>)>;

/// Registry of the live per-link and per-device counts, read by the `stats` encoder.
#[derive(Debug, Default)]
pub struct Breakdown {
    links: Mutex<BTreeMap<String, Weak<ErrorCounts>>>,
    devices: Mutex<BTreeMap<String, Weak<ErrorCounts>>>,
}

impl Breakdown {
    /// The counts of link `name`, shared with any live holder of the same name.
    pub fn link(&self, name: &str) -> Arc<ErrorCounts> {
        register(&self.links, name)
    }

    /// The counts of device `id`, shared with any live holder of the same id.
    pub fn device(&self, id: &str) -> Arc<ErrorCounts> {
        register(&self.devices, id)
    }

    /// Every live link with all its counters.
    pub fn links(&self) -> Named {
        snapshot(&self.links, ErrorCounts::all)
    }

    /// Live devices with at least one error, with their non-zero counters only.
    pub fn device_errors(&self) -> Named {
        let mut out = snapshot(&self.devices, ErrorCounts::nonzero);
        out.retain(|(_, c)| !c.is_empty());
        out
    }
}

fn register(map: &Mutex<BTreeMap<String, Weak<ErrorCounts>>>, name: &str) -> Arc<ErrorCounts> {
    let mut map = lock(map);
    if let Some(c) = map.get(name).and_then(Weak::upgrade) {
        return c;
    }
    let c = Arc::new(ErrorCounts::default());
    map.insert(name.to_string(), Arc::downgrade(&c));
    c
}

/// Reads the live entries and forgets the dead ones.
fn snapshot(
    map: &Mutex<BTreeMap<String, Weak<ErrorCounts>>>,
    read: fn(&ErrorCounts) -> Vec<(&'static str, u64)>,
) -> Named {
    let mut map = lock(map);
    map.retain(|_, w| w.strong_count() > 0);
    map.iter()
        .filter_map(|(k, w)| w.upgrade().map(|c| (k.clone(), read(&c))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_lists_live_links_fully_and_devices_only_with_errors() {
        let b = Breakdown::default();
        let link = b.link("10.0.0.17:502");
        let quiet = b.device("lamp-016");
        let noisy = b.device("lamp-017");
        noisy.inc(ModbusFault::Timeout);
        noisy.inc(ModbusFault::Timeout);
        link.inc(ModbusFault::Timeout);
        assert!(Arc::ptr_eq(&noisy, &b.device("lamp-017")));
        let links = b.links();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].1.len(), ModbusFault::ALL.len());
        assert!(links[0].1.contains(&("modbus_timeout", 1)));
        assert_eq!(
            b.device_errors(),
            vec![("lamp-017".to_string(), vec![("modbus_timeout", 2)])]
        );
        drop((link, quiet, noisy));
        assert!(b.links().is_empty() && b.device_errors().is_empty());
    }
}
