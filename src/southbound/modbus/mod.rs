//! Modbus drivers. `plan` coalesces points into block reads (pure), `read` runs one poll
//! cycle on a connection and decodes it, `link` is the task that owns one TCP connection
//! and schedules every device behind it.

pub mod link;
pub mod plan;
pub mod read;
pub mod write;
