//! Sans-IO behaviour of the simulated equipment: each model owns its hidden state and,
//! on every [`Model::step`], first adopts what a client wrote into the setpoint tables
//! (holding registers, coils), then advances time and rewrites the measured tables.
//!
//! Invariant: a model detects client writes by comparing each setpoint register with
//! the value it wrote itself on the previous step, so a write is honoured exactly once,
//! at the next step, and never fought back by the model.

use std::time::Duration;

use super::{Registers, put_f32, put_str, put_u32, put_u64};

/// The lamp's dimming schedule, one step every [`LAMP_SCHEDULE_STEP`].
pub const LAMP_SCHEDULE: [u16; 4] = [100, 60, 30, 80];
/// How long the lamp stays at one schedule step (a client write lasts until the next).
pub const LAMP_SCHEDULE_STEP: Duration = Duration::from_secs(30);
/// Lamp power per dimming percent, in watts (a 60 W LED luminaire).
pub const LAMP_WATTS_PER_PERCENT: f64 = 0.6;
/// Mean time between lamp or driver failure bit flips.
const LAMP_FAILURE_MEAN: Duration = Duration::from_secs(3600);

/// Serial number the simulated charger reports at input 20..28.
pub const CHARGER_SERIAL: &str = "EVC22-000417";
/// The charger's own current limit in amperes, whatever `max_current` says.
pub const CHARGER_MAX_AMPS: f64 = 32.0;
/// The charger's power limit in watts.
pub const CHARGER_MAX_WATTS: f64 = 7400.0;
/// Below this current cap the charger suspends the session (IEC 61851 minimum).
pub const CHARGER_MIN_AMPS: f64 = 6.0;

/// Charger status codes (input 0), as the profile's enum expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ChargerStatus {
    Available = 0,
    Preparing = 1,
    Charging = 2,
    SuspendedEvse = 4,
    Finishing = 5,
    Unavailable = 7,
}

/// Behaviour of one simulated device.
#[derive(Debug)]
pub enum Model {
    Lamp(Lamp),
    Charger(Charger),
    Meter(Meter),
}

impl Model {
    /// Advances the model by `dt` against the register tables.
    pub fn step(&mut self, regs: &mut Registers, dt: Duration) {
        match self {
            Model::Lamp(m) => m.step(regs, dt),
            Model::Charger(m) => m.step(regs, dt),
            Model::Meter(m) => m.step(regs, dt),
        }
    }
}

/// Uniform noise in `[-amplitude, amplitude]`.
fn noise(rng: &mut fastrand::Rng, amplitude: f64) -> f64 {
    (rng.f64() * 2.0 - 1.0) * amplitude
}

/// Rounds a non-negative physical value into a u16 register in `unit` steps, saturating.
fn scaled_u16(value: f64, unit: f64) -> u16 {
    // `as` saturates float-to-int conversions, which is the clamp we want.
    (value / unit).round() as u16
}

fn hours(dt: Duration) -> f64 {
    dt.as_secs_f64() / 3600.0
}

fn set(table: &mut [u16], addr: usize, value: u16) {
    if let Some(slot) = table.get_mut(addr) {
        *slot = value;
    }
}

fn get(table: &[u16], addr: usize) -> u16 {
    table.get(addr).copied().unwrap_or(0)
}

fn set_bit(table: &mut [bool], addr: usize, value: bool) {
    if let Some(slot) = table.get_mut(addr) {
        *slot = value;
    }
}

fn get_bit(table: &[bool], addr: usize) -> bool {
    table.get(addr).copied().unwrap_or(false)
}

/// A dimmable LED street lamp following a dimming schedule.
#[derive(Debug)]
pub struct Lamp {
    rng: fastrand::Rng,
    schedule_index: usize,
    in_step: Duration,
    dim: u16,
    on: bool,
    energy_wh: f64,
    burning_s: f64,
    switches: u32,
    temperature_c: f64,
    status: u16,
}

impl Lamp {
    /// A lamp at the first schedule step, with some history on its counters.
    pub fn install(regs: &mut Registers, seed: u64) -> Lamp {
        let lamp = Lamp {
            rng: fastrand::Rng::with_seed(seed),
            schedule_index: 0,
            in_step: Duration::ZERO,
            dim: LAMP_SCHEDULE[0],
            on: true,
            energy_wh: 182_340.0,
            burning_s: 8_123.0 * 3600.0,
            switches: 2_917,
            temperature_c: 24.0,
            status: 0,
        };
        set(&mut regs.holding, 0, lamp.dim);
        set_bit(&mut regs.coils, 0, lamp.on);
        lamp
    }

    fn step(&mut self, regs: &mut Registers, dt: Duration) {
        // Client writes first: a new dim level, or the on coil switched.
        let written_dim = get(&regs.holding, 0);
        if written_dim != self.dim {
            self.dim = written_dim.min(100);
        } else if get_bit(&regs.coils, 0) != self.on {
            self.dim = if self.on {
                0
            } else {
                LAMP_SCHEDULE[self.schedule_index]
            };
        }

        self.in_step += dt;
        if self.in_step >= LAMP_SCHEDULE_STEP {
            self.in_step = Duration::ZERO;
            self.schedule_index = (self.schedule_index + 1) % LAMP_SCHEDULE.len();
            self.dim = LAMP_SCHEDULE[self.schedule_index];
        }

        let on = self.dim > 0;
        if on != self.on {
            self.switches = self.switches.wrapping_add(1);
            self.on = on;
        }

        let rng = &mut self.rng;
        let voltage = 230.0 + noise(rng, 1.5);
        let power = if on {
            f64::from(self.dim) * LAMP_WATTS_PER_PERCENT * (1.0 + noise(rng, 0.01))
        } else {
            0.0
        };
        let current = power / voltage;
        let power_factor = if on { 0.95 + noise(rng, 0.005) } else { 0.0 };
        let target_c = if on { 28.0 } else { 18.0 };
        self.temperature_c += (target_c - self.temperature_c) * 0.01 + noise(rng, 0.05);
        self.energy_wh += power * hours(dt);
        if on {
            self.burning_s += dt.as_secs_f64();
        }
        if rng.f64() < dt.as_secs_f64() / LAMP_FAILURE_MEAN.as_secs_f64() {
            self.status ^= if rng.bool() { 0b01 } else { 0b10 };
        }

        set(&mut regs.holding, 0, self.dim);
        set_bit(&mut regs.coils, 0, on);
        let input = &mut regs.input;
        set(input, 0, scaled_u16(power, 0.1));
        put_u32(input, 1, self.energy_wh as u32);
        set(input, 3, scaled_u16(voltage, 0.1));
        set(input, 4, scaled_u16(current, 0.001));
        set(input, 5, scaled_u16(power_factor, 0.001));
        // Two's complement i16 in a u16 register.
        set(
            input,
            6,
            ((self.temperature_c * 10.0).round() as i16) as u16,
        );
        put_u32(input, 7, (self.burning_s / 3600.0) as u32);
        put_u32(input, 9, self.switches);
        set(input, 11, self.status);
    }
}

/// An AC charger running sessions one after another.
#[derive(Debug)]
pub struct Charger {
    rng: fastrand::Rng,
    phase: ChargerStatus,
    in_phase: Duration,
    phase_len: Duration,
    session_wh: f64,
    total_wh: f64,
}

impl Charger {
    /// A charger in the middle of a session, so a demo shows power at once.
    pub fn install(regs: &mut Registers, seed: u64) -> Charger {
        let mut rng = fastrand::Rng::with_seed(seed);
        let phase_len = Duration::from_secs(rng.u64(60..=180));
        set_bit(&mut regs.coils, 0, true);
        set(&mut regs.holding, 0, 320);
        put_str(&mut regs.input, 20, 8, CHARGER_SERIAL);
        Charger {
            rng,
            phase: ChargerStatus::Charging,
            in_phase: Duration::ZERO,
            phase_len,
            session_wh: 1_250.0,
            total_wh: 4_321_987.0,
        }
    }

    /// The phase the session is in (not counting a suspension by a low current cap).
    pub fn phase(&self) -> ChargerStatus {
        self.phase
    }

    fn enter(&mut self, phase: ChargerStatus) {
        let secs = match phase {
            ChargerStatus::Available => self.rng.u64(20..=60),
            ChargerStatus::Charging => self.rng.u64(60..=180),
            _ => 2,
        };
        if phase == ChargerStatus::Preparing {
            self.session_wh = 0.0;
        }
        self.phase = phase;
        self.in_phase = Duration::ZERO;
        self.phase_len = Duration::from_secs(secs);
    }

    fn step(&mut self, regs: &mut Registers, dt: Duration) {
        let enabled = get_bit(&regs.coils, 0);
        let cap_amps = (f64::from(get(&regs.holding, 0)) / 10.0).min(CHARGER_MAX_AMPS);

        if !enabled {
            if self.phase != ChargerStatus::Unavailable {
                self.enter(ChargerStatus::Unavailable);
            }
        } else if self.phase == ChargerStatus::Unavailable {
            self.enter(ChargerStatus::Available);
        } else {
            self.in_phase += dt;
            if self.in_phase >= self.phase_len {
                let next = match self.phase {
                    ChargerStatus::Available => ChargerStatus::Preparing,
                    ChargerStatus::Preparing => ChargerStatus::Charging,
                    ChargerStatus::Charging => ChargerStatus::Finishing,
                    _ => ChargerStatus::Available,
                };
                self.enter(next);
            }
        }

        let rng = &mut self.rng;
        let voltage = 230.0 + noise(rng, 2.0);
        let mut status = self.phase;
        let (power, current) = if self.phase != ChargerStatus::Charging {
            (0.0, 0.0)
        } else if cap_amps < CHARGER_MIN_AMPS {
            status = ChargerStatus::SuspendedEvse;
            (0.0, 0.0)
        } else {
            let current = cap_amps * (0.985 + noise(rng, 0.01));
            let power = (voltage * current).min(CHARGER_MAX_WATTS);
            (power, power / voltage)
        };
        let added = power * hours(dt);
        self.session_wh += added;
        self.total_wh += added;
        let plugged = matches!(
            self.phase,
            ChargerStatus::Preparing | ChargerStatus::Charging | ChargerStatus::Finishing
        );

        let input = &mut regs.input;
        set(input, 0, status as u16);
        put_f32(input, 1, power as f32, true);
        set(input, 3, scaled_u16(current, 0.1));
        set(input, 4, scaled_u16(voltage, 0.1));
        put_u32(input, 5, self.session_wh as u32);
        put_u64(input, 7, self.total_wh as u64);
        set(input, 11, 0);
        set_bit(&mut regs.discrete, 0, plugged);
    }
}

/// An Eastron SDM630 three-phase meter on a lightly loaded feeder.
#[derive(Debug)]
pub struct Meter {
    rng: fastrand::Rng,
    amps: [f64; 3],
    import_kwh: f64,
}

impl Meter {
    pub fn install(_regs: &mut Registers, seed: u64) -> Meter {
        Meter {
            rng: fastrand::Rng::with_seed(seed),
            amps: [8.0, 11.5, 6.2],
            import_kwh: 12_345.6,
        }
    }

    fn step(&mut self, regs: &mut Registers, dt: Duration) {
        let rng = &mut self.rng;
        let power_factor = 0.92 + noise(rng, 0.01);
        let mut volts = [0.0; 3];
        let mut watts = [0.0; 3];
        for phase in 0..3 {
            volts[phase] = 230.0 + noise(rng, 1.0);
            self.amps[phase] = (self.amps[phase] + noise(rng, 0.3)).clamp(2.0, 25.0);
            watts[phase] = volts[phase] * self.amps[phase] * power_factor;
        }
        let total_w: f64 = watts.iter().sum();
        self.import_kwh += total_w / 1000.0 * hours(dt);
        let frequency = 50.0 + noise(rng, 0.02);

        let input = &mut regs.input;
        for phase in 0..3 {
            put_f32(input, phase * 2, volts[phase] as f32, false);
            put_f32(input, 6 + phase * 2, self.amps[phase] as f32, false);
            put_f32(input, 12 + phase * 2, watts[phase] as f32, false);
        }
        put_f32(input, 42, (volts.iter().sum::<f64>() / 3.0) as f32, false);
        put_f32(input, 48, self.amps.iter().sum::<f64>() as f32, false);
        put_f32(input, 52, total_w as f32, false);
        put_f32(input, 62, power_factor as f32, false);
        put_f32(input, 70, frequency as f32, false);
        put_f32(input, 72, self.import_kwh as f32, false);
        put_f32(input, 74, 0.0, false);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{get_f32, get_u32};
    use super::*;

    const TICK: Duration = Duration::from_millis(500);

    #[test]
    fn the_lamp_walks_its_dimming_schedule_and_power_follows_dim() {
        let mut regs = Registers::default();
        let mut lamp = Model::Lamp(Lamp::install(&mut regs, 7));
        let mut seen = Vec::new();
        for _ in 0..LAMP_SCHEDULE.len() {
            lamp.step(&mut regs, LAMP_SCHEDULE_STEP);
            let dim = regs.holding[0];
            let watts = f64::from(regs.input[0]) / 10.0;
            let expected = f64::from(dim) * LAMP_WATTS_PER_PERCENT;
            assert!(
                (watts - expected).abs() <= expected * 0.02 + 0.1,
                "{dim}% {watts} W"
            );
            seen.push(dim);
        }
        assert_eq!(seen, [60, 30, 80, 100]);
    }

    #[test]
    fn switching_the_lamp_coil_off_turns_power_off_and_counts_a_switch() {
        let mut regs = Registers::default();
        let mut lamp = Model::Lamp(Lamp::install(&mut regs, 7));
        lamp.step(&mut regs, TICK);
        let switches = get_u32(&regs.input, 9);
        regs.coils[0] = false;
        lamp.step(&mut regs, TICK);
        assert_eq!((regs.holding[0], regs.input[0]), (0, 0));
        assert_eq!(get_u32(&regs.input, 9), switches.map(|s| s + 1));
        regs.coils[0] = true;
        lamp.step(&mut regs, TICK);
        assert!(regs.holding[0] > 0 && regs.input[0] > 0);
    }

    #[test]
    fn the_lamp_energy_counter_integrates_the_reported_power() {
        let mut regs = Registers::default();
        let mut lamp = Model::Lamp(Lamp::install(&mut regs, 7));
        lamp.step(&mut regs, Duration::ZERO);
        let before = get_u32(&regs.input, 1).unwrap_or(0);
        let dt = Duration::from_secs(10);
        let mut expected_wh = 0.0;
        for _ in 0..360 {
            lamp.step(&mut regs, dt);
            expected_wh += f64::from(regs.input[0]) / 10.0 * hours(dt);
        }
        let counted = f64::from(get_u32(&regs.input, 1).unwrap_or(0) - before);
        assert!(
            (counted - expected_wh).abs() < 2.0,
            "{counted} vs {expected_wh}"
        );
        assert!(counted > 10.0);
    }

    #[test]
    fn a_charger_session_goes_through_every_phase_and_counts_energy() {
        let mut regs = Registers::default();
        let mut model = Charger::install(&mut regs, 3);
        let mut seen = Vec::new();
        for _ in 0..2_000 {
            model.step(&mut regs, Duration::from_secs(1));
            if seen.last() != Some(&regs.input[0]) {
                seen.push(regs.input[0]);
            }
            if regs.input[0] == ChargerStatus::Charging as u16 {
                assert!(regs.discrete[0], "plug follows the session");
            }
        }
        for status in [0, 1, 2, 5] {
            assert!(seen.contains(&status), "{status} in {seen:?}");
        }
        assert!(get_u32(&regs.input, 5).unwrap_or(0) > 0);
    }

    #[test]
    fn the_charger_honours_max_current_as_a_cap_and_suspends_below_six_amps() {
        let mut regs = Registers::default();
        let mut model = Charger::install(&mut regs, 3);
        model.step(&mut regs, TICK);
        let full = get_f32(&regs.input, 1, true).unwrap_or(0.0);
        assert!((7000.0..=7400.0).contains(&full), "{full}");
        regs.holding[0] = 100;
        model.step(&mut regs, TICK);
        let capped = get_f32(&regs.input, 1, true).unwrap_or(0.0);
        assert!((2200.0..=2350.0).contains(&capped), "{capped}");
        assert!((97..=101).contains(&regs.input[3]), "{}", regs.input[3]);
        regs.holding[0] = 50;
        model.step(&mut regs, TICK);
        assert_eq!(regs.input[0], ChargerStatus::SuspendedEvse as u16);
        assert_eq!(get_f32(&regs.input, 1, true), Some(0.0));
    }

    #[test]
    fn disabling_the_charger_makes_it_unavailable_until_enabled_again() {
        let mut regs = Registers::default();
        let mut model = Charger::install(&mut regs, 3);
        regs.coils[0] = false;
        model.step(&mut regs, TICK);
        assert_eq!(regs.input[0], ChargerStatus::Unavailable as u16);
        assert!(!regs.discrete[0]);
        regs.coils[0] = true;
        model.step(&mut regs, TICK);
        assert_eq!(model.phase(), ChargerStatus::Available);
    }

    #[test]
    fn the_meter_totals_are_coherent_with_its_phases() {
        let mut regs = Registers::default();
        let mut model = Meter::install(&mut regs, 11);
        model.step(&mut regs, TICK);
        let f = |addr| get_f32(&regs.input, addr, false).unwrap_or(f32::NAN);
        let phases = f(12) + f(14) + f(16);
        assert!((phases - f(52)).abs() < 1.0, "{phases} vs {}", f(52));
        assert!((f(6) + f(8) + f(10) - f(48)).abs() < 0.01);
        assert!((0.90..=0.94).contains(&f(62)));
        assert_eq!(f(74), 0.0);
    }
}
