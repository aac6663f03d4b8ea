//! An OCPP hub on a given queue with one charge point, `CP1` (device `ev-1`, connector 1,
//! no passwords): for the tests that drive a `Hub` directly, without a listener. Shared by
//! the integration tests (`common::ocpp_hub`) and the fuzz targets (`#[path]`).

use super::profiles::profile;
use polegate::buffer::Queue;
use polegate::config::ocpp::{Authorize, OcppCfg, OcppDeviceCfg};
use polegate::ops::counters::Counters;
use polegate::pipeline::{DeviceInfo, Input};
use polegate::southbound::ocpp::hub::{Hub, OcppDevice};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The hub, its events going to `out`.
pub fn one_charger_hub(q: &Queue, out: mpsc::Sender<Input>, counters: Arc<Counters>) -> Hub {
    let cfg = OcppCfg {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
        heartbeat_s: 300,
        authorize: Authorize::Accept,
        id_tags: vec![],
        upstream: None,
    };
    let device = OcppDevice {
        info: Arc::new(DeviceInfo::new(
            "ev-1",
            profile("ocpp-charger"),
            Default::default(),
            0,
        )),
        cfg: OcppDeviceCfg {
            charge_point_id: "CP1".into(),
            connector: 1,
            password: None,
            upstream_password: None,
        },
    };
    Hub::new(
        cfg,
        vec![device],
        q.kv("ocpp").expect("kv"),
        q.clone(),
        out,
        counters,
    )
}
