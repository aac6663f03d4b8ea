//! The on-disk encoding of one [`Record`] (the value under its `seq` key).
//!
//! ```text
//! version u8 (= 2) | flags u8 (bit 0 = retain) | created_ms u64 BE | topic_len u16 BE | topic | payload
//! ```
//! Version 2 stores the payload as its open [`Body`] (the JSON object without its closing
//! `}`). Version 1, written before, stored the closed object; it is still read, so a
//! cabinet upgraded with a backlog delivers it, and its payload becomes the same body.
//!
//! Decoding is total: any byte string yields a record or a [`DecodeError`], never a panic.
//! Unknown flag bits and unknown versions are errors, so a future writer cannot be
//! misread by an old reader.

use super::{Body, Record};

pub(crate) const VERSION: u8 = 2;
/// Records written before the payload was stored open.
const VERSION_CLOSED: u8 = 1;
const FLAG_RETAIN: u8 = 0b0000_0001;
const HEADER_LEN: usize = 1 + 1 + 8 + 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("empty value")]
    Empty,
    #[error("unknown encoding version {0}")]
    Version(u8),
    #[error("truncated: {len} bytes, header needs {HEADER_LEN}")]
    TruncatedHeader { len: usize },
    #[error("unknown flag bits {0:#04x}")]
    Flags(u8),
    #[error("topic length {topic_len} exceeds the {rest} bytes left")]
    TruncatedTopic { topic_len: usize, rest: usize },
    #[error("topic is not UTF-8")]
    TopicUtf8,
    #[error("version 1 payload is not a JSON object ending in '}}'")]
    NotAnObject,
}

/// Encoded size of `rec`, or `None` when its topic cannot be encoded (over 65535 bytes).
pub(crate) fn encoded_len(rec: &Record) -> Option<usize> {
    if rec.topic.len() > usize::from(u16::MAX) {
        return None;
    }
    Some(HEADER_LEN + rec.topic.len() + rec.payload.as_open().len())
}

/// Encodes `rec`; `None` when its topic is longer than 65535 bytes.
pub(crate) fn encode(rec: &Record) -> Option<Vec<u8>> {
    let topic_len = u16::try_from(rec.topic.len()).ok()?;
    let mut out = Vec::with_capacity(encoded_len(rec)?);
    out.push(VERSION);
    out.push(if rec.retain { FLAG_RETAIN } else { 0 });
    out.extend_from_slice(&rec.created_ms.to_be_bytes());
    out.extend_from_slice(&topic_len.to_be_bytes());
    out.extend_from_slice(rec.topic.as_bytes());
    out.extend_from_slice(rec.payload.as_open());
    Some(out)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let (&version, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != VERSION && version != VERSION_CLOSED {
        return Err(DecodeError::Version(version));
    }
    let (header, rest) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(DecodeError::TruncatedHeader { len: bytes.len() })?;
    let flags = header[1];
    if flags & !FLAG_RETAIN != 0 {
        return Err(DecodeError::Flags(flags));
    }
    let mut created = [0u8; 8];
    created.copy_from_slice(&header[2..10]);
    let topic_len = usize::from(u16::from_be_bytes([header[10], header[11]]));
    let (topic, payload) = rest
        .split_at_checked(topic_len)
        .ok_or(DecodeError::TruncatedTopic {
            topic_len,
            rest: rest.len(),
        })?;
    let topic = std::str::from_utf8(topic).map_err(|_| DecodeError::TopicUtf8)?;
    let payload = if version == VERSION_CLOSED {
        Body::from_closed(payload).ok_or(DecodeError::NotAnObject)?
    } else {
        Body::from_open(payload)
    };
    Ok(Record {
        topic: topic.to_owned(),
        payload,
        retain: flags & FLAG_RETAIN != 0,
        created_ms: u64::from_be_bytes(created),
    })
}

#[cfg(test)]
mod tests {
    //! Proves the record encoding round-trips and that no byte string makes decoding panic.
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = Record> {
        (
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(topic, payload, retain, created_ms)| Record {
                topic,
                payload: Body::from_open(&payload),
                retain,
                created_ms,
            })
    }

    proptest! {
        #[test]
        fn every_record_decodes_to_itself_and_its_length_is_predicted(rec in record()) {
            let bytes = encode(&rec).expect("short topic");
            prop_assert_eq!(Some(bytes.len()), encoded_len(&rec));
            prop_assert_eq!(decode(&bytes), Ok(rec));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn a_truncated_record_is_an_error_not_a_shorter_record(rec in record(), cut in 1usize..12) {
            let bytes = encode(&rec).expect("short topic");
            prop_assert!(decode(&bytes[..HEADER_LEN - cut]).is_err());
        }
    }

    #[test]
    fn unknown_versions_and_flags_are_rejected() {
        let rec = Record {
            topic: "t".into(),
            payload: Body::from_open(b"p"),
            retain: true,
            created_ms: 7,
        };
        let mut bytes = encode(&rec).expect("short topic");
        bytes[0] = 3;
        assert_eq!(decode(&bytes), Err(DecodeError::Version(3)));
        bytes[0] = VERSION;
        bytes[1] = 0x81;
        assert_eq!(decode(&bytes), Err(DecodeError::Flags(0x81)));
    }

    #[test]
    fn a_topic_over_65535_bytes_cannot_be_encoded() {
        let rec = Record {
            topic: "x".repeat(70_000),
            payload: Body::from_open(b""),
            retain: false,
            created_ms: 0,
        };
        assert_eq!(encode(&rec), None);
        assert_eq!(encoded_len(&rec), None);
    }

    /// A value exactly as version 1 wrote it: the payload a closed JSON object.
    fn version_1(created_ms: u64, topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![VERSION_CLOSED, FLAG_RETAIN];
        v.extend_from_slice(&created_ms.to_be_bytes());
        v.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        v.extend_from_slice(topic.as_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_version_1_record_publishes_the_bytes_the_previous_release_published() {
        use crate::model::payload::Delivery;
        let closed = br#"{"seq":1,"points":{"a":1}}"#;
        let rec = decode(&version_1(7, "p/g/d/telemetry", closed)).expect("version 1 decodes");
        assert_eq!(rec.topic, "p/g/d/telemetry");
        assert!(rec.retain);
        assert_eq!(rec.created_ms, 7);
        assert_eq!(rec.payload.clone().publish(Delivery::Live), closed.to_vec());
        assert_eq!(
            rec.payload.publish(Delivery::Historical),
            br#"{"seq":1,"points":{"a":1},"historical":true}"#.to_vec()
        );
    }

    #[test]
    fn a_version_1_payload_that_is_not_an_object_is_an_error() {
        assert_eq!(
            decode(&version_1(0, "t", b"plain")),
            Err(DecodeError::NotAnObject)
        );
    }

    #[test]
    fn a_version_1_record_written_again_is_version_2_and_one_byte_shorter() {
        let old = version_1(7, "t", b"{\"a\":1}");
        let rec = decode(&old).expect("version 1 decodes");
        let new = encode(&rec).expect("short topic");
        assert_eq!(new[0], VERSION);
        assert_eq!(new.len(), old.len() - 1);
        assert_eq!(decode(&new), Ok(rec));
    }
}
