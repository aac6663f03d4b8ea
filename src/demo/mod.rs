//! `polegate demo`: simulated pole hardware and an embedded broker.

pub mod broker;
pub mod lora;
pub mod ocpp;
pub mod pa;
pub mod rtu_slave;
pub mod run;
pub mod schedule;
pub mod sim;
pub mod story;
