//! The MQTT topics of one gateway (SPEC §5), built and parsed here only, so the topics
//! the pipeline queues on, the session publishes and subscribes to and the command
//! router reads cannot drift apart. Pure.
//!
//! ```text
//! P/G/status            gateway connection state (retained, also the last will)
//! P/G/stats             gateway counters
//! P/G/schedule          lighting schedules' state (retained, SPEC §10)
//! P/G/D/telemetry       readings of device D
//! P/G/D/state           birth certificate of device D (retained)
//! P/G/D/cmd             commands to device D (subscribed as P/G/+/cmd)
//! P/G/D/cmd/result      answers to those commands
//! ```
//! `P` is `mqtt.topic_prefix`, `G` the gateway id.

/// What follows a device id in a topic the gateway publishes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceTopic {
    Telemetry,
    State,
    CmdResult,
}

impl DeviceTopic {
    fn leaf(self) -> &'static str {
        match self {
            DeviceTopic::Telemetry => "telemetry",
            DeviceTopic::State => "state",
            DeviceTopic::CmdResult => "cmd/result",
        }
    }
}

/// The topics under `P/G`; built once per settings change, so building a topic per event
/// formats only the device part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `P/G`, without a trailing `/`.
    base: String,
}

impl Topics {
    pub fn new(prefix: &str, gateway: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{gateway}"),
        }
    }

    /// `P/G/D/<leaf>`.
    pub fn device(&self, device: &str, leaf: DeviceTopic) -> String {
        format!("{}/{device}/{}", self.base, leaf.leaf())
    }

    /// `P/G/stats`.
    pub fn stats(&self) -> String {
        format!("{}/stats", self.base)
    }

    /// `P/G/schedule`.
    pub fn schedule(&self) -> String {
        format!("{}/schedule", self.base)
    }

    /// `P/G/status`.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// `P/G/+/cmd`, the subscription that receives every device's commands.
    pub fn command_filter(&self) -> String {
        format!("{}/+/cmd", self.base)
    }

    /// The device id of a `P/G/D/cmd` topic; `None` for any other topic, another gateway's
    /// or a device id with a `/` in it (which the filter's single-level `+` cannot match).
    pub fn command_device<'t>(&self, topic: &'t str) -> Option<&'t str> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        let dev = rest.strip_suffix("/cmd")?;
        (!dev.is_empty() && !dev.contains('/')).then_some(dev)
    }
}

#[cfg(test)]
mod tests {
    //! Proves every topic has the SPEC §5 shape and that command topics parse back to the
    //! device they were built for, and nothing else does.
    use super::*;

    #[test]
    fn every_topic_the_gateway_publishes_has_the_spec_shape() {
        let t = Topics::new("polegate", "g1");
        assert_eq!(
            t.device("lamp-1", DeviceTopic::Telemetry),
            "polegate/g1/lamp-1/telemetry"
        );
        assert_eq!(
            t.device("lamp-1", DeviceTopic::State),
            "polegate/g1/lamp-1/state"
        );
        assert_eq!(
            t.device("lamp-1", DeviceTopic::CmdResult),
            "polegate/g1/lamp-1/cmd/result"
        );
        assert_eq!(t.stats(), "polegate/g1/stats");
        assert_eq!(t.status(), "polegate/g1/status");
        assert_eq!(t.command_filter(), "polegate/g1/+/cmd");
    }

    #[test]
    fn the_device_is_taken_from_the_command_topic() {
        let t = Topics::new("polegate", "g1");
        assert_eq!(t.command_device("polegate/g1/lamp-1/cmd"), Some("lamp-1"));
        assert_eq!(t.command_device("polegate/g1/lamp-1/cmd/result"), None);
        assert_eq!(t.command_device("polegate/g2/lamp-1/cmd"), None);
        assert_eq!(t.command_device("polegate/g1/a/b/cmd"), None);
        assert_eq!(t.command_device("polegate/g1//cmd"), None);
        assert_eq!(t.command_device("polegate/g1x/lamp-1/cmd"), None);
    }

    #[test]
    fn a_topic_the_command_filter_matches_parses_back_to_its_device() {
        let t = Topics::new("a/b", "cab-7");
        for dev in ["lamp-017", "ev.1", "x"] {
            let topic = t.command_filter().replace('+', dev);
            assert_eq!(t.command_device(&topic), Some(dev));
        }
    }
}
