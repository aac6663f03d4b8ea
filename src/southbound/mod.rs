//! Southbound drivers: one task per connection or bus, talking to the equipment.

pub mod modbus;
