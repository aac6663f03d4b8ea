//! `polegate probe modbus` (SPEC §1): the technician's read of any table and range over
//! Modbus TCP, RTU over TCP or a serial port, printed raw and decoded as any type and
//! word order. It opens the transport with the daemon's own code (`connect::connect`, the
//! same framing, pacing and drain) and decodes with the profiles' convert, so what the
//! probe shows is what the daemon would read.
//!
//! Exit codes: 0 read ok; 2 usage error (bad `--read`, type wider than the range);
//! 3 the transport failed or the device answered with an exception.

use super::exit::{EXIT_OK, EXIT_RUNTIME, EXIT_USAGE};
use crate::config::{BusCfg, BusKind, Framing, Parity};
use crate::ops::counters::Counters;
use crate::profile::{PointDef, PointType, RegisterRef, Table, WordOrder, convert};
use crate::southbound::modbus::connect::{Endpoint, connect};
use crate::southbound::modbus::read::exception_meaning;
use crate::southbound::modbus::rtu::Mode;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_modbus::client::Reader;
use tokio_modbus::slave::SlaveContext;

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["tcp", "serial"])))]
pub struct ModbusProbe {
    /// Modbus TCP (or, with --framing rtu, a serial device server) at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub tcp: Option<String>,
    /// Framing on --tcp: tcp (MBAP) or rtu (RTU over TCP).
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "rtu"])]
    pub framing: String,
    /// A serial port (RS-485 adapter).
    #[arg(long, value_name = "DEV")]
    pub serial: Option<PathBuf>,
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    #[arg(long, default_value = "even", value_parser = ["even", "none", "odd"])]
    pub parity: String,
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub data_bits: u8,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub stop_bits: u8,
    /// Serial line discipline.
    #[arg(long, default_value = "rtu", value_parser = ["rtu", "ascii"])]
    pub mode: String,
    /// Unit (slave) id.
    #[arg(long, default_value_t = 1)]
    pub unit: u8,
    /// What to read: TABLE:ADDR:COUNT, TABLE one of coil, discrete, input, holding.
    #[arg(long, value_name = "TABLE:ADDR:COUNT")]
    pub read: String,
    /// Decode as: bool u16 i16 u32 i32 u64 i64 f32 f64 string (default u16, bool for bits).
    #[arg(long = "type", value_name = "T")]
    pub ty: Option<String>,
    /// Word order of multi-register values: abcd dcba badc cdab.
    #[arg(long, default_value = "abcd")]
    pub order: String,
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

/// A parsed `--read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSpec {
    pub table: Table,
    pub start: u16,
    pub count: u16,
}

pub fn parse_read(s: &str) -> Result<ReadSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [t, a, c] = parts.as_slice() else {
        return Err(format!(
            "--read '{s}': expected TABLE:ADDR:COUNT, e.g. holding:0:2"
        ));
    };
    // "coils" too: the probe is typed by hand, profiles are not.
    let table = match *t {
        "coils" => Ok(Table::Coil),
        other => other.parse::<Table>(),
    }
    .map_err(|_| format!("--read: '{t}' is not a table: coil, discrete, input or holding"))?;
    let start: u16 = a
        .parse()
        .map_err(|_| format!("--read: address '{a}' is not 0..=65535"))?;
    let count: u16 = c
        .parse()
        .map_err(|_| format!("--read: count '{c}' is not a number"))?;
    let max = table.max_per_read();
    if count == 0 || count > max {
        return Err(format!(
            "--read: count {count} must be 1..={max} for {}",
            table.as_str()
        ));
    }
    if u32::from(start) + u32::from(count) > 65536 {
        return Err("--read: range runs past address 65535".into());
    }
    Ok(ReadSpec {
        table,
        start,
        count,
    })
}

fn parse_type(s: &str) -> Result<PointType, String> {
    s.parse()
        .map_err(|_| format!("--type: '{s}' is not a type"))
}

/// Any case: profiles write `ABCD`, the command line usually `abcd`.
fn parse_order(s: &str) -> Result<WordOrder, String> {
    s.to_ascii_uppercase().parse().map_err(|_| {
        format!(
            "--order: '{}' is not a word order: abcd, dcba, badc or cdab",
            s.to_ascii_lowercase()
        )
    })
}

fn point(spec: &ReadSpec, ty: PointType, order: WordOrder, off: u16) -> PointDef {
    let reg = RegisterRef {
        table: spec.table,
        address: spec.start + off,
        order,
        bit: None,
        length: (ty == PointType::String).then_some(spec.count - off),
    };
    PointDef::plain(format!("@{}", spec.start + off), None, ty, Some(reg))
}

/// What to decode the words read as, checked against the range before anything is sent.
struct Decode {
    spec: ReadSpec,
    ty: PointType,
    order: WordOrder,
    /// Registers one value spans.
    width: u16,
}

/// The words or bits read.
type Data = Result<Vec<u16>, Vec<bool>>;

/// Runs the probe; returns the exit code.
pub fn modbus(args: &ModbusProbe) -> i32 {
    let (decode, endpoint) = match decode_plan(args).and_then(|d| Ok((d, endpoint(args)?))) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("polegate probe: {e}");
            return EXIT_USAGE;
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("polegate probe: cannot start the async runtime");
        return EXIT_RUNTIME;
    };
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    match rt.block_on(read(&endpoint, args.unit, &decode.spec, timeout)) {
        Ok((what, data)) => {
            println!("{what}");
            print(&decode, &data);
            EXIT_OK
        }
        Err(e) => {
            eprintln!("polegate probe: {e}");
            EXIT_RUNTIME
        }
    }
}

fn decode_plan(args: &ModbusProbe) -> Result<Decode, String> {
    let spec = parse_read(&args.read)?;
    let default = if spec.table.is_bits() { "bool" } else { "u16" };
    let ty = parse_type(args.ty.as_deref().unwrap_or(default))?;
    let order = parse_order(&args.order)?;
    if spec.table.is_bits() != (ty == PointType::Bool) {
        return Err(format!(
            "--type {}: {} holds {}",
            ty.as_str(),
            spec.table.as_str(),
            if spec.table.is_bits() {
                "bits (use bool)"
            } else {
                "registers (bool is for coil/discrete)"
            }
        ));
    }
    let probe = point(&spec, ty, order, 0);
    let width = probe
        .reg
        .as_ref()
        .map_or(1, |r| convert::span(r, ty))
        .max(1);
    if !spec.table.is_bits() && width > spec.count {
        return Err(format!(
            "--type {} needs {width} registers but --read covers {}",
            ty.as_str(),
            spec.count
        ));
    }
    Ok(Decode {
        spec,
        ty,
        order,
        width,
    })
}

fn endpoint(args: &ModbusProbe) -> Result<Endpoint, String> {
    match (&args.tcp, &args.serial) {
        (Some(a), _) => Ok(Endpoint::Tcp {
            address: a.clone(),
            framing: if args.framing == "rtu" {
                Framing::Rtu
            } else {
                Framing::Tcp
            },
        }),
        (None, Some(port)) => {
            let ascii = args.mode == "ascii";
            let bus = BusCfg {
                id: "probe".into(),
                kind: if ascii {
                    BusKind::ModbusAscii
                } else {
                    BusKind::ModbusRtu
                },
                port: port.clone(),
                baud: args.baud,
                parity: match args.parity.as_str() {
                    "none" => Parity::None,
                    "odd" => Parity::Odd,
                    _ => Parity::Even,
                },
                data_bits: args.data_bits,
                stop_bits: args.stop_bits,
                timeout_ms: args.timeout_ms,
                retries: 0,
                origin: "command line".into(),
            };
            let mode = if ascii { Mode::Ascii } else { Mode::Rtu };
            Ok(Endpoint::Serial { bus, mode })
        }
        (None, None) => Err("give --tcp HOST:PORT or --serial DEV".into()),
    }
}

/// Reads the range under `timeout`: the line naming what was read, and the data; or
/// what failed (the transport, the timeout, or the device's exception).
async fn read(
    endpoint: &Endpoint,
    unit: u8,
    spec: &ReadSpec,
    timeout: Duration,
) -> Result<(String, Data), String> {
    let counters = Arc::new(Counters::default());
    let mut ctx = connect(endpoint, &counters)
        .await
        .map_err(|e| e.to_string())?;
    ctx.set_slave(tokio_modbus::Slave(unit));
    let (s, n) = (spec.start, spec.count);
    let fut = async {
        match spec.table {
            Table::Coil => ctx.read_coils(s, n).await.map(|r| r.map(Err)),
            Table::Discrete => ctx.read_discrete_inputs(s, n).await.map(|r| r.map(Err)),
            Table::Input => ctx.read_input_registers(s, n).await.map(|r| r.map(Ok)),
            Table::Holding => ctx.read_holding_registers(s, n).await.map(|r| r.map(Ok)),
        }
    };
    let where_ = match endpoint {
        Endpoint::Tcp { address, .. } => address.clone(),
        Endpoint::Serial { bus, .. } => bus.port.display().to_string(),
    };
    let what = format!(
        "read {} {}..{} from unit {unit} at {where_}",
        spec.table.as_str(),
        s,
        u32::from(s) + u32::from(n)
    );
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(format!(
            "{what} timed out after {} ms (check unit id, wiring, baud and parity)",
            timeout.as_millis()
        )),
        Ok(Err(e)) => Err(format!("{what} failed: {e}")),
        Ok(Ok(Err(code))) => Err(format!(
            "{what}: device answered exception {:#04x}: {}",
            u8::from(code),
            exception_meaning(code)
        )),
        Ok(Ok(Ok(d))) => Ok((what, d)),
    }
}

/// Prints the data raw, and decoded as the type and word order asked for.
fn print(d: &Decode, data: &Data) {
    let (s, n) = (d.spec.start, d.spec.count);
    let words = match data {
        Err(bits) => {
            for (i, b) in bits.iter().take(usize::from(n)).enumerate() {
                println!("  {:>5}  {}", u32::from(s) + i as u32, u8::from(*b));
            }
            return;
        }
        Ok(words) => words,
    };
    for (i, w) in words.iter().enumerate() {
        println!("  {:>5}  0x{w:04X}  {w:>5}", u32::from(s) + i as u32);
    }
    let step = if d.ty == PointType::String {
        n
    } else {
        d.width
    };
    let mut off = 0u16;
    while off + step <= n {
        let p = point(&d.spec, d.ty, d.order, off);
        let span = usize::from(off)..usize::from(off + step);
        match words.get(span).map(|w| convert::decode_registers(&p, w)) {
            Some(Ok(v)) => println!(
                "  {:>5}  {} {:?}: {}",
                s + off,
                d.ty.as_str(),
                d.order,
                v.value
            ),
            Some(Err(e)) => println!("  {:>5}  {}: {e}", s + off, d.ty.as_str()),
            None => {}
        }
        off += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_specs_parse_and_bad_ones_name_the_problem() {
        assert_eq!(
            parse_read("holding:0:2"),
            Ok(ReadSpec {
                table: Table::Holding,
                start: 0,
                count: 2
            })
        );
        assert!(parse_read("holding:0").is_err());
        assert!(parse_read("flash:0:2").unwrap_err().contains("not a table"));
        assert!(parse_read("holding:0:126").unwrap_err().contains("1..=125"));
        assert!(parse_read("coil:65535:2").unwrap_err().contains("past"));
    }

    #[test]
    fn types_and_orders_parse_like_profiles_but_orders_in_any_case() {
        assert_eq!(parse_type("f32"), Ok(PointType::F32));
        assert_eq!(
            parse_type("float").unwrap_err(),
            "--type: 'float' is not a type"
        );
        assert_eq!(parse_order("cdab"), Ok(WordOrder::Cdab));
        assert_eq!(parse_order("BaDc"), Ok(WordOrder::Badc));
        assert_eq!(
            parse_order("XYZW").unwrap_err(),
            "--order: 'xyzw' is not a word order: abcd, dcba, badc or cdab"
        );
        assert_eq!(parse_read("coils:0:8").map(|r| r.table), Ok(Table::Coil));
        assert!(parse_read("coil:0:2001").unwrap_err().contains("1..=2000"));
    }
}
