//! Where a Modbus error is counted: process-wide (`stats.errors`), on its link
//! (`stats.links`) and, when the unit that caused it is known, on its device
//! (`stats.device_errors`). One call per error site, so the three never disagree.

use crate::ops::counters::{Counters, ErrorCounts, ModbusFault};
use std::sync::Arc;

/// The counters one link's errors go to. Cheap to clone (shared with its framing).
#[derive(Debug, Clone)]
pub struct FaultCounter {
    counters: Arc<Counters>,
    link: Option<Arc<ErrorCounts>>,
    /// The devices of the link by unit id.
    units: Arc<[(u8, Arc<ErrorCounts>)]>,
}

impl FaultCounter {
    /// Process-wide counting only (`polegate probe`, tests of the framing).
    pub fn process_only(counters: Arc<Counters>) -> FaultCounter {
        FaultCounter {
            counters,
            link: None,
            units: Arc::new([]),
        }
    }

    /// Registers link `name` and its devices (unit id, device id).
    pub fn new<'a>(
        counters: Arc<Counters>,
        name: &str,
        devices: impl IntoIterator<Item = (u8, &'a str)>,
    ) -> FaultCounter {
        let b = &counters.breakdown;
        let units: Vec<_> = devices
            .into_iter()
            .map(|(unit, id)| (unit, b.device(id)))
            .collect();
        FaultCounter {
            link: Some(b.link(name)),
            units: units.into(),
            counters,
        }
    }

    /// Counts `e` process-wide, on the link, and on the device at `unit` if given.
    pub fn count(&self, e: ModbusFault, unit: Option<u8>) {
        Counters::inc(e.process_counter(&self.counters));
        if let Some(l) = &self.link {
            l.inc(e);
        }
        if let Some((_, d)) = unit.and_then(|u| self.units.iter().find(|(x, _)| *x == u)) {
            d.inc(e);
        }
    }

    /// The process-wide counters, for errors that are not Modbus's.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}
