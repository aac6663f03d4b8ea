//! Modbus TCP simulators of the shipped profiles, for `polegate demo` and for tests.
//!
//! A [`Sim`] serves one register map ([`Registers`]) over Modbus TCP with tokio-modbus's
//! own server, one task per connection and none per request. A behaviour task (see
//! [`behaviour`]) rewrites the measured registers every [`TICK`] and honours what
//! clients wrote into the setpoints, so values move like real equipment.
//!
//! Invariants:
//! - The register mutex is a std mutex, never held across an await.
//! - [`Sim::stop`] (and dropping the `Sim`) closes the listener *and* every open
//!   connection, so tests can make a device vanish; [`Sim::resume`] brings it back on
//!   the same address with the same registers.
//! - A [`Fault`] applies to every request from the next one on; every request, answered
//!   or not, is counted in [`Sim::requests`].

pub mod behaviour;

use crate::model::limits;
use std::future::{Ready, ready};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

use self::behaviour::{Charger, Lamp, Meter, Model};

/// Entries in each of the four tables.
pub const TABLE_LEN: usize = 128;
/// Period of the behaviour task.
pub const TICK: Duration = Duration::from_millis(500);
/// Modbus limits on one read: a real device refuses larger requests, so the simulator does.
const MAX_READ_BITS: usize = limits::MODBUS_MAX_READ_BITS as usize;
const MAX_READ_WORDS: usize = limits::MODBUS_MAX_READ_REGISTERS as usize;

/// The four Modbus tables of one simulated device, 0-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registers {
    pub coils: Vec<bool>,
    pub discrete: Vec<bool>,
    pub input: Vec<u16>,
    pub holding: Vec<u16>,
}

impl Default for Registers {
    fn default() -> Self {
        Registers {
            coils: vec![false; TABLE_LEN],
            discrete: vec![false; TABLE_LEN],
            input: vec![0; TABLE_LEN],
            holding: vec![0; TABLE_LEN],
        }
    }
}

/// How the simulator answers, settable at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Accept requests but never answer: clients time out.
    Silent,
    /// Answer reads; accept writes but never answer them (a device that hangs mid-command).
    SilentWrites,
    /// Answer every request with this exception.
    Exception(ExceptionCode),
}

/// Which equipment a [`Sim`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKind {
    /// Dimmable LED street lamp (profile `lamp`).
    Lamp,
    /// AC charging point (profile `ev-charger`).
    EvCharger,
    /// Eastron SDM630 three-phase meter.
    Sdm630,
    /// Plain zeroed registers without behaviour, for tests.
    Static,
}

impl SimKind {
    fn install(self, regs: &mut Registers, seed: u64) -> Option<Model> {
        match self {
            SimKind::Lamp => Some(Model::Lamp(Lamp::install(regs, seed))),
            SimKind::EvCharger => Some(Model::Charger(Charger::install(regs, seed))),
            SimKind::Sdm630 => Some(Model::Meter(Meter::install(regs, seed))),
            SimKind::Static => None,
        }
    }
}

// A panic elsewhere must not take the simulator down with it.
use crate::ops::lock::lock;

/// The tokio-modbus service: the register map, the fault mode and the request counter.
#[derive(Debug, Clone, Default)]
struct SimService {
    regs: Arc<Mutex<Registers>>,
    fault: Arc<Mutex<Fault>>,
    requests: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl Service for SimService {
    type Request = Request<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Option<Response>, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let write = is_write(&req);
        if write {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        let fault = *lock(&self.fault);
        ready(match fault {
            Fault::None => apply(&mut lock(&self.regs), req).map(Some),
            Fault::Silent => Ok(None),
            Fault::SilentWrites if write => Ok(None),
            Fault::SilentWrites => apply(&mut lock(&self.regs), req).map(Some),
            Fault::Exception(code) => Err(code),
        })
    }
}

fn is_write(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::WriteSingleCoil(..)
            | Request::WriteMultipleCoils(..)
            | Request::WriteSingleRegister(..)
            | Request::WriteMultipleRegisters(..)
    )
}

/// The table range a request addresses, or the exception a device would answer.
fn span(len: usize, addr: u16, quantity: usize, max: usize) -> Result<Range<usize>, ExceptionCode> {
    if quantity == 0 || quantity > max {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let start = usize::from(addr);
    let end = start + quantity;
    if end > len {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(start..end)
}

fn read<T: Copy>(
    table: &[T],
    addr: u16,
    quantity: u16,
    max: usize,
) -> Result<Vec<T>, ExceptionCode> {
    let range = span(table.len(), addr, usize::from(quantity), max)?;
    Ok(table[range].to_vec())
}

fn write<T: Copy>(table: &mut [T], addr: u16, values: &[T]) -> Result<u16, ExceptionCode> {
    let range = span(table.len(), addr, values.len(), usize::from(u16::MAX))?;
    table[range].copy_from_slice(values);
    // span() bounded the length by u16::MAX.
    Ok(u16::try_from(values.len()).unwrap_or(u16::MAX))
}

/// Serves one request against the tables.
fn apply(regs: &mut Registers, req: Request<'_>) -> Result<Response, ExceptionCode> {
    match req {
        Request::ReadCoils(addr, n) => {
            read(&regs.coils, addr, n, MAX_READ_BITS).map(Response::ReadCoils)
        }
        Request::ReadDiscreteInputs(addr, n) => {
            read(&regs.discrete, addr, n, MAX_READ_BITS).map(Response::ReadDiscreteInputs)
        }
        Request::ReadHoldingRegisters(addr, n) => {
            read(&regs.holding, addr, n, MAX_READ_WORDS).map(Response::ReadHoldingRegisters)
        }
        Request::ReadInputRegisters(addr, n) => {
            read(&regs.input, addr, n, MAX_READ_WORDS).map(Response::ReadInputRegisters)
        }
        Request::WriteSingleCoil(addr, value) => {
            write(&mut regs.coils, addr, &[value])?;
            Ok(Response::WriteSingleCoil(addr, value))
        }
        Request::WriteMultipleCoils(addr, values) => {
            write(&mut regs.coils, addr, &values).map(|n| Response::WriteMultipleCoils(addr, n))
        }
        Request::WriteSingleRegister(addr, value) => {
            write(&mut regs.holding, addr, &[value])?;
            Ok(Response::WriteSingleRegister(addr, value))
        }
        Request::WriteMultipleRegisters(addr, values) => write(&mut regs.holding, addr, &values)
            .map(|n| Response::WriteMultipleRegisters(addr, n)),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

/// A running simulator. Dropping it stops everything it started.
#[derive(Debug)]
pub struct Sim {
    kind: SimKind,
    addr: SocketAddr,
    service: SimService,
    /// Cancelled on drop: the behaviour task and any server.
    root: CancellationToken,
    /// Cancelled by [`Sim::stop`]: the listener and its connections.
    serving: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl Sim {
    /// Binds `bind` (port 0 picks a free port, see [`Sim::addr`]) and serves until
    /// `cancel` is cancelled, [`Sim::stop`] is called or the `Sim` is dropped.
    pub async fn spawn(
        kind: SimKind,
        bind: SocketAddr,
        cancel: CancellationToken,
    ) -> io::Result<Sim> {
        let service = SimService::default();
        let model = kind.install(&mut lock(&service.regs), fastrand::u64(..));
        let root = cancel.child_token();
        let (addr, serving, server) = serve(bind, &service, &root).await?;
        if let Some(mut model) = model {
            // Plausible values before the first client read, not zeros.
            model.step(&mut lock(&service.regs), Duration::ZERO);
            tokio::spawn(run_behaviour(
                model,
                Arc::clone(&service.regs),
                root.clone(),
            ));
        }
        tracing::debug!(?kind, %addr, "simulator listening");
        Ok(Sim {
            kind,
            addr,
            service,
            root,
            serving,
            server: Some(server),
        })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn kind(&self) -> SimKind {
        self.kind
    }

    /// The live register map; lock briefly, never across an await.
    pub fn registers(&self) -> Arc<Mutex<Registers>> {
        Arc::clone(&self.service.regs)
    }

    /// Applies to every request from the next one on, on every connection.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.service.fault) = fault;
    }

    pub fn fault(&self) -> Fault {
        *lock(&self.service.fault)
    }

    /// Requests received since spawn, answered or not.
    pub fn requests(&self) -> u64 {
        self.service.requests.load(Ordering::Relaxed)
    }

    /// Write requests received since spawn, answered or not.
    pub fn writes(&self) -> u64 {
        self.service.writes.load(Ordering::Relaxed)
    }

    /// Closes the listener and every open connection; returns once the listener is
    /// closed. The registers and the behaviour keep going, see [`Sim::resume`].
    pub async fn stop(&mut self) {
        self.serving.cancel();
        if let Some(server) = self.server.take() {
            // The server task only ends by cancellation or an accept error (logged).
            let _ = server.await;
        }
    }

    /// Serves again on the same address with the same registers after [`Sim::stop`].
    pub async fn resume(&mut self) -> io::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        let (_, serving, server) = serve(self.addr, &self.service, &self.root).await?;
        self.serving = serving;
        self.server = Some(server);
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

/// Binds and spawns the server task; cancelling the returned token drops the listener
/// and, through tokio-modbus's own drop guard, every connection task it spawned.
async fn serve(
    bind: SocketAddr,
    service: &SimService,
    root: &CancellationToken,
) -> io::Result<(SocketAddr, CancellationToken, JoinHandle<()>)> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let serving = root.child_token();
    let token = serving.clone();
    let service = service.clone();
    let server = tokio::spawn(async move {
        let new_service = move |_peer| Ok(Some(service.clone()));
        let on_connected = |stream, peer| {
            let accepted = accept_tcp_connection(stream, peer, &new_service);
            async move { accepted }
        };
        let on_process_error =
            |err: io::Error| tracing::debug!(%err, "simulator connection closed");
        let stopped = async move { token.cancelled().await };
        if let Err(err) = Server::new(listener)
            .serve_until(&on_connected, on_process_error, stopped)
            .await
        {
            tracing::warn!(%addr, %err, "simulator stopped accepting connections");
        }
    });
    Ok((addr, serving, server))
}

async fn run_behaviour(mut model: Model, regs: Arc<Mutex<Registers>>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval_at(Instant::now() + TICK, TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => model.step(&mut lock(&regs), TICK),
        }
    }
}

/// Writes `v` at `regs[addr..addr + 2]`: high word first (ABCD), or low word first
/// (CDAB, "word swapped") when `cdab`; bytes are big-endian inside each word.
/// Out-of-range writes are ignored.
pub fn put_f32(regs: &mut [u16], addr: usize, v: f32, cdab: bool) {
    let bits = v.to_bits();
    let (high, low) = ((bits >> 16) as u16, bits as u16);
    put_words(regs, addr, &if cdab { [low, high] } else { [high, low] });
}

/// Writes `v` at `regs[addr..addr + 2]`, big-endian words (ABCD).
pub fn put_u32(regs: &mut [u16], addr: usize, v: u32) {
    put_words(regs, addr, &[(v >> 16) as u16, v as u16]);
}

/// Writes `v` at `regs[addr..addr + 4]`, big-endian words.
pub fn put_u64(regs: &mut [u16], addr: usize, v: u64) {
    put_words(
        regs,
        addr,
        &[
            (v >> 48) as u16,
            (v >> 32) as u16,
            (v >> 16) as u16,
            v as u16,
        ],
    );
}

/// Writes `s` into `len` registers at `addr`, two bytes per register, high byte first,
/// padded with NUL and truncated to `2 * len` bytes.
pub fn put_str(regs: &mut [u16], addr: usize, len: usize, s: &str) {
    let mut bytes = s.bytes().chain(std::iter::repeat(0));
    let words: Vec<u16> = (0..len)
        .map(|_| {
            let high = bytes.next().unwrap_or(0);
            let low = bytes.next().unwrap_or(0);
            u16::from_be_bytes([high, low])
        })
        .collect();
    put_words(regs, addr, &words);
}

fn put_words(regs: &mut [u16], addr: usize, words: &[u16]) {
    if let Some(slot) = regs.get_mut(addr..addr + words.len()) {
        slot.copy_from_slice(words);
    }
}

/// Reads back what [`put_f32`] wrote; `None` when out of range.
pub fn get_f32(regs: &[u16], addr: usize, cdab: bool) -> Option<f32> {
    let words = regs.get(addr..addr + 2)?;
    let (high, low) = if cdab {
        (words[1], words[0])
    } else {
        (words[0], words[1])
    };
    Some(f32::from_bits(u32::from(high) << 16 | u32::from(low)))
}

/// Reads back what [`put_u32`] wrote; `None` when out of range.
pub fn get_u32(regs: &[u16], addr: usize) -> Option<u32> {
    let words = regs.get(addr..addr + 2)?;
    Some(u32::from(words[0]) << 16 | u32::from(words[1]))
}

/// Reads back what [`put_u64`] wrote; `None` when out of range.
pub fn get_u64(regs: &[u16], addr: usize) -> Option<u64> {
    let words = regs.get(addr..addr + 4)?;
    Some(words.iter().fold(0, |acc, w| acc << 16 | u64::from(*w)))
}

#[cfg(test)]
mod tests;
