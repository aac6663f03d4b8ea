//! A small LoRaWAN 1.0.x network server for the devices in the config (sans-IO).
//!
//! Framing and crypto come from the `lorawan` crate; this module decides: which device a
//! frame belongs to (several may share a DevAddr: the MIC decides), the 32-bit frame
//! counter rebuilt from the 16 bits on air, replays, DevNonce reuse, and the join-accept.
//! It mutates its in-memory [`DeviceState`]s; the driver persists the state of the device
//! named in the result before acting on it.
//!
//! Radio input never reaches a panic: the crate's MAC-command parser (known to panic on
//! malformed bytes in 0.9) is never called, FOpts and FPort-0 payloads are only counted,
//! and every call into the crate runs under `catch_unwind` as defense in depth.

use super::session::{DeviceState, Session, Store, hex};
use crate::config::lora::Activation;
use lorawan::creator::{DataPayloadCreator, JoinAcceptCreator};
use lorawan::default_crypto::DefaultFactory;
use lorawan::keys::{AES128, AppKey, AppSKey, NewSKey};
use lorawan::parser::{
    DataHeader, DataPayload, DevNonce, EncryptedJoinAcceptPayload, FCtrl, PhyPayload,
};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Largest accepted jump of the uplink frame counter.
pub const MAX_FCNT_GAP: u32 = 16_384;

/// A LoRa device as configured.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    /// Big-endian, as written.
    pub dev_eui: [u8; 8],
    pub activation: Activation,
}

/// What an accepted uplink asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    Data {
        device: usize,
        fcnt: u32,
        /// None: no FPort (no FRMPayload).
        fport: Option<u8>,
        /// Decrypted FRMPayload (MAC commands when `fport == Some(0)`).
        payload: Vec<u8>,
        confirmed: bool,
        /// FOpts carried MAC commands (counted, not parsed).
        fopts: bool,
    },
    Join {
        device: usize,
        /// The encrypted join-accept PHYPayload, ready for the air.
        accept: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    #[error("malformed LoRaWAN frame: {0}")]
    Malformed(&'static str),
    #[error("not an uplink frame")]
    NotUplink,
    #[error("unknown DevAddr {0:08x}")]
    UnknownDevAddr(u32),
    #[error("bad MIC (DevAddr {0:08x})")]
    BadMic(u32),
    #[error("device {device}: replayed frame counter {fcnt} (last {last})")]
    Replay {
        device: String,
        fcnt: u32,
        last: u32,
    },
    #[error("join-request from unknown DevEUI {0}")]
    UnknownDevEui(String),
    #[error("device {0}: join-request with a bad MIC")]
    JoinBadMic(String),
    #[error("device {device}: DevNonce {nonce:04x} already used")]
    DevNonceReplay { device: String, nonce: u16 },
}

pub struct Server {
    pub devices: Vec<Device>,
    pub states: Vec<DeviceState>,
    by_addr: HashMap<u32, Vec<usize>>,
    by_eui: HashMap<[u8; 8], usize>,
    net_id: [u8; 3],
    prefix: (u32, u8),
    /// Last JoinNonce handed out (persisted under `join_nonce`).
    pub join_nonce: u32,
}

fn rev<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut o = [0u8; N];
    for (i, x) in b.iter().rev().take(N).enumerate() {
        o[i] = *x;
    }
    o
}

impl Server {
    /// Builds the server from the config and what the store remembers. ABP sessions
    /// keep their counters when address and keys are unchanged.
    pub fn new(devices: Vec<Device>, net_id: [u8; 3], prefix: (u32, u8), store: &Store) -> Server {
        let mut states = Vec::with_capacity(devices.len());
        for d in &devices {
            let mut st = store.load(&d.dev_eui).unwrap_or_default();
            match &d.activation {
                Activation::Abp {
                    dev_addr,
                    nwk_s_key,
                    app_s_key,
                } => {
                    let same = st.session.as_ref().is_some_and(|s| {
                        s.dev_addr == *dev_addr
                            && s.nwk_s_key == nwk_s_key.0
                            && s.app_s_key == app_s_key.0
                    });
                    if !same {
                        st.session = Some(Session {
                            dev_addr: *dev_addr,
                            nwk_s_key: nwk_s_key.0,
                            app_s_key: app_s_key.0,
                            fcnt_up: None,
                            fcnt_down: 0,
                        });
                    }
                }
                Activation::Otaa { .. } => {}
                Activation::External => st.session = None,
            }
            states.push(st);
        }
        let mut s = Server {
            by_eui: devices
                .iter()
                .enumerate()
                .map(|(i, d)| (d.dev_eui, i))
                .collect(),
            devices,
            states,
            by_addr: HashMap::new(),
            net_id,
            prefix,
            join_nonce: store.join_nonce(),
        };
        s.reindex();
        s
    }

    fn reindex(&mut self) {
        self.by_addr.clear();
        for (i, st) in self.states.iter().enumerate() {
            if let Some(s) = &st.session {
                self.by_addr.entry(s.dev_addr).or_default().push(i);
            }
        }
    }

    /// Handles one uplink PHYPayload.
    pub fn uplink(&mut self, phy: &[u8]) -> Result<Accepted, Rejected> {
        match catch_unwind(AssertUnwindSafe(|| self.uplink_inner(phy))) {
            Ok(r) => r,
            Err(_) => Err(Rejected::Malformed("frame made the LoRaWAN parser panic")),
        }
    }

    fn uplink_inner(&mut self, phy: &[u8]) -> Result<Accepted, Rejected> {
        if phy.is_empty() {
            return Err(Rejected::Malformed("empty"));
        }
        let parsed = lorawan::parser::parse(phy.to_vec())
            .map_err(|_| Rejected::Malformed("not a LoRaWAN 1.0 frame"))?;
        match parsed {
            PhyPayload::Data(DataPayload::Encrypted(enc)) => {
                if !enc.is_uplink() {
                    return Err(Rejected::NotUplink);
                }
                let fhdr = enc.fhdr();
                let mut a = [0u8; 4];
                a.copy_from_slice(fhdr.dev_addr().as_ref());
                let addr = u32::from_le_bytes(a);
                let wire = fhdr.fcnt();
                let fopts = fhdr.fopts_len() > 0;
                let fhdr_len = 7 + fhdr.fopts_len() as usize;
                let confirmed = enc.is_confirmed();
                let candidates = self
                    .by_addr
                    .get(&addr)
                    .cloned()
                    .ok_or(Rejected::UnknownDevAddr(addr))?;
                let mut replay = None;
                for i in candidates {
                    let Some(s) = &self.states[i].session else {
                        continue;
                    };
                    let nwk = AES128(s.nwk_s_key);
                    let fcnt = match s.fcnt_up {
                        None => u32::from(wire),
                        Some(last) => {
                            let same = (last & 0xffff_0000) | u32::from(wire);
                            if same <= last {
                                if enc.validate_mic(&nwk, same) {
                                    replay = Some(Rejected::Replay {
                                        device: self.devices[i].id.clone(),
                                        fcnt: same,
                                        last,
                                    });
                                    continue;
                                }
                                same.wrapping_add(0x1_0000)
                            } else {
                                same
                            }
                        }
                    };
                    if let Some(last) = s.fcnt_up
                        && fcnt.wrapping_sub(last) > MAX_FCNT_GAP
                    {
                        continue;
                    }
                    if !enc.validate_mic(&nwk, fcnt) {
                        continue;
                    }
                    let app = AES128(s.app_s_key);
                    let dec = match catch_unwind(AssertUnwindSafe(|| {
                        lorawan::parser::EncryptedDataPayload::new_with_factory(
                            phy.to_vec(),
                            DefaultFactory,
                        )
                        .and_then(|e| e.decrypt(Some(&nwk), Some(&app), fcnt))
                    })) {
                        Ok(Ok(d)) => d.to_inner(),
                        _ => return Err(Rejected::Malformed("cannot decrypt")),
                    };
                    let body_start = 1 + fhdr_len;
                    let end = dec.len() - 4;
                    let (fport, payload) = if end > body_start {
                        (Some(dec[body_start]), dec[body_start + 1..end].to_vec())
                    } else {
                        (None, Vec::new())
                    };
                    if let Some(s) = &mut self.states[i].session {
                        s.fcnt_up = Some(fcnt);
                    }
                    return Ok(Accepted::Data {
                        device: i,
                        fcnt,
                        fport,
                        payload,
                        confirmed,
                        fopts,
                    });
                }
                Err(replay.unwrap_or(Rejected::BadMic(addr)))
            }
            PhyPayload::JoinRequest(jr) => {
                let dev_eui: [u8; 8] = rev(jr.dev_eui().as_ref());
                let join_eui: [u8; 8] = rev(jr.app_eui().as_ref());
                let mut nonce_wire = [0u8; 2];
                nonce_wire.copy_from_slice(jr.dev_nonce().as_ref());
                let nonce = u16::from_le_bytes(nonce_wire);
                let unknown = || Rejected::UnknownDevEui(hex(&dev_eui));
                let &i = self.by_eui.get(&dev_eui).ok_or_else(unknown)?;
                let Activation::Otaa {
                    join_eui: want,
                    app_key,
                } = self.devices[i].activation
                else {
                    return Err(unknown());
                };
                if want != [0; 8] && want != join_eui {
                    return Err(unknown());
                }
                if !jr.validate_mic(&AES128(app_key.0)) {
                    return Err(Rejected::JoinBadMic(self.devices[i].id.clone()));
                }
                if self.states[i].dev_nonces.contains(&nonce) {
                    return Err(Rejected::DevNonceReplay {
                        device: self.devices[i].id.clone(),
                        nonce,
                    });
                }
                let join_nonce = (self.join_nonce + 1) & 0x00ff_ffff;
                let (p, len) = self.prefix;
                let mask = u32::MAX >> len;
                let dev_addr = p | (join_nonce.wrapping_mul(2_654_435_761) & mask);
                let (accept, session) =
                    self.join_accept(app_key.0, join_nonce, dev_addr, &nonce_wire)?;
                self.join_nonce = join_nonce;
                let st = &mut self.states[i];
                st.dev_nonces.push(nonce);
                if st.dev_nonces.len() > super::session::MAX_DEV_NONCES {
                    st.dev_nonces.remove(0);
                }
                st.session = Some(session);
                self.reindex();
                Ok(Accepted::Join { device: i, accept })
            }
            _ => Err(Rejected::NotUplink),
        }
    }

    /// Builds the encrypted join-accept and the session keys it implies.
    fn join_accept(
        &self,
        app_key: [u8; 16],
        join_nonce: u32,
        dev_addr: u32,
        dev_nonce_wire: &[u8; 2],
    ) -> Result<(Vec<u8>, Session), Rejected> {
        let jn = join_nonce.to_le_bytes();
        let jn = [jn[0], jn[1], jn[2]];
        let net = [self.net_id[2], self.net_id[1], self.net_id[0]];
        let addr = dev_addr.to_le_bytes();
        let mut c = JoinAcceptCreator::new();
        c.set_app_nonce(&jn)
            .set_net_id(&net)
            .set_dev_addr(&addr)
            .set_dl_settings(0u8)
            .set_rx_delay(1);
        let accept = c
            .build(&AES128(app_key))
            .map_err(|_| Rejected::Malformed("join-accept"))?[..17]
            .to_vec();
        let key = AppKey::from(app_key);
        let dec = EncryptedJoinAcceptPayload::new_with_factory(accept.clone(), DefaultFactory)
            .map_err(|_| Rejected::Malformed("join-accept"))?
            .decrypt(&key);
        let dn = DevNonce::new(&dev_nonce_wire[..]).ok_or(Rejected::Malformed("DevNonce"))?;
        let nwk = dec.derive_newskey(&dn, &key);
        let app = dec.derive_appskey(&dn, &key);
        let mut n = [0u8; 16];
        n.copy_from_slice(nwk.as_ref());
        let mut a = [0u8; 16];
        a.copy_from_slice(app.as_ref());
        Ok((
            accept,
            Session {
                dev_addr,
                nwk_s_key: n,
                app_s_key: a,
                fcnt_up: None,
                fcnt_down: 0,
            },
        ))
    }

    /// Builds an unconfirmed data downlink for `device` and advances its FCntDown.
    /// `fport` None sends no FRMPayload (a bare ACK).
    pub fn downlink(
        &mut self,
        device: usize,
        fport: Option<u8>,
        payload: &[u8],
        ack: bool,
    ) -> Option<Vec<u8>> {
        let s = self.states.get_mut(device)?.session.as_mut()?;
        let out = build_downlink(s, fport, payload, ack)?;
        s.fcnt_down = s.fcnt_down.wrapping_add(1);
        Some(out)
    }
}

/// An unconfirmed data-down frame for `s` with its current FCntDown.
pub fn build_downlink(
    s: &Session,
    fport: Option<u8>,
    payload: &[u8],
    ack: bool,
) -> Option<Vec<u8>> {
    let mut c = DataPayloadCreator::new();
    let addr = s.dev_addr.to_le_bytes();
    let mut fctrl = FCtrl::new(0, false);
    if ack {
        fctrl.set_ack();
    }
    c.set_uplink(false)
        .set_confirmed(false)
        .set_dev_addr(&addr)
        .set_fctrl(&fctrl)
        .set_fcnt(s.fcnt_down);
    if let Some(p) = fport {
        c.set_f_port(p);
    }
    let nwk = NewSKey::from(s.nwk_s_key);
    let app = AppSKey::from(s.app_s_key);
    c.build(payload, &[], &nwk, &app).ok().map(|b| b.to_vec())
}
