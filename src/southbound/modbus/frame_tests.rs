//! The Modbus codec against the specification's examples, and the stream scanners.

use super::*;

#[test]
fn crc_matches_the_modbus_specification_example() {
    // Read holding 0x006B x3 from unit 0x11: CRC 0x8776 sent as 76 87.
    let f = rtu_frame(0x11, &[0x03, 0x00, 0x6B, 0x00, 0x03]);
    assert_eq!(f, [0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87]);
}

#[test]
fn ascii_frame_matches_the_modbus_serial_guide_example() {
    // Guide example: unit 0x11 read holding 0x006B x3 → LRC 0x7E.
    let f = ascii_frame(0x11, &[0x03, 0x00, 0x6B, 0x00, 0x03]);
    assert_eq!(f, b":1103006B00037E\r\n");
    assert_eq!(
        scan_ascii(&f, 0x11, 3),
        Scan::Reply {
            pdu: vec![0x03, 0x00, 0x6B, 0x00, 0x03],
            len: f.len()
        }
    );
}

#[test]
fn ascii_reply_with_a_wrong_lrc_is_a_bad_checksum_and_other_units_are_stray() {
    let mut f = ascii_frame(2, &[0x03, 0x02, 0x12, 0x34]);
    let n = f.len();
    f[n - 3] = b'0';
    f[n - 4] = b'0';
    assert_eq!(scan_ascii(&f, 2, 3), Scan::BadChecksum { len: n });
    let other = ascii_frame(9, &[0x03, 0x02, 0x12, 0x34]);
    assert_eq!(scan_ascii(&other, 2, 3), Scan::Stray { len: n });
    assert_eq!(scan_ascii(b"xx", 2, 3), Scan::Garbage);
    assert_eq!(scan_ascii(b":0103", 2, 3), Scan::NeedMore);
}

#[test]
fn every_request_round_trips_through_the_slave_codec() {
    let reqs = [
        Request::ReadCoils(3, 10),
        Request::ReadDiscreteInputs(0, 1),
        Request::ReadHoldingRegisters(100, 2),
        Request::ReadInputRegisters(7, 125),
        Request::WriteSingleCoil(4, true),
        Request::WriteSingleRegister(5, 0xBEEF),
        Request::WriteMultipleCoils(1, Cow::Owned(vec![true, false, true])),
        Request::WriteMultipleRegisters(9, Cow::Owned(vec![1, 2, 3])),
        Request::MaskWriteRegister(2, 0xFF00, 0x0012),
    ];
    for r in reqs {
        let pdu = encode_request(&r).expect("encodable");
        assert_eq!(decode_request(&pdu), Some(r));
    }
}

#[test]
fn replies_decode_against_their_request_and_exceptions_are_data() {
    let req = Request::ReadHoldingRegisters(0, 2);
    let pdu = encode_response(3, &Ok(Response::ReadHoldingRegisters(vec![0x4148, 1])));
    assert_eq!(
        decode_response(&req, &pdu),
        Ok(Ok(Response::ReadHoldingRegisters(vec![0x4148, 1])))
    );
    let exc = encode_response(3, &Err(ExceptionCode::IllegalDataAddress));
    assert_eq!(exc, [0x83, 0x02]);
    assert_eq!(
        decode_response(&req, &exc),
        Ok(Err(ExceptionCode::IllegalDataAddress))
    );
    assert!(decode_response(&req, &[0x04, 0x02, 0, 1]).is_err());
    assert!(decode_response(&req, &[0x03, 0x04, 0, 1]).is_err());
    let coils = Request::ReadCoils(0, 3);
    assert_eq!(
        decode_response(&coils, &[0x01, 0x01, 0b101]),
        Ok(Ok(Response::ReadCoils(vec![true, false, true])))
    );
}

#[test]
fn the_scanner_skips_strays_and_garbage_and_flags_our_corrupted_reply() {
    let reply = rtu_frame(2, &[0x03, 0x02, 0x00, 0x2A]);
    // Another unit's reply, another master's request, a noise byte, then ours.
    let mut line = rtu_frame(7, &[0x03, 0x02, 0x00, 0x01]);
    line.extend(rtu_frame(5, &[0x03, 0x00, 0x00, 0x00, 0x01]));
    line.push(0x00);
    line.extend(&reply);
    let mut at = 0;
    let mut seen = Vec::new();
    loop {
        match scan_rtu(&line[at..], 2, 3) {
            Scan::Reply { pdu, len } => {
                assert_eq!(pdu, [0x03, 0x02, 0x00, 0x2A]);
                assert_eq!(at + len, line.len());
                break;
            }
            Scan::Stray { len } => {
                seen.push("stray");
                at += len;
            }
            Scan::Garbage => {
                seen.push("garbage");
                at += 1;
            }
            other => panic!("unexpected {other:?} at {at}"),
        }
    }
    assert_eq!(seen, ["stray", "stray", "garbage"]);
    let mut bad = reply.clone();
    bad[4] ^= 0xFF;
    assert_eq!(scan_rtu(&bad, 2, 3), Scan::BadChecksum { len: 7 });
    assert_eq!(scan_rtu(&reply[..4], 2, 3), Scan::NeedMore);
}

#[test]
fn an_ascii_run_without_its_line_feed_is_stray_once_it_is_longer_than_any_frame() {
    // Found by tests/fuzz.rs: the client kept such bytes until its request timed out.
    let mut noise = vec![b':'];
    noise.extend(std::iter::repeat_n(b'A', MAX_ASCII_FRAME - 2));
    assert_eq!(scan_ascii(&noise, 2, 3), Scan::NeedMore);
    noise.push(b'A');
    assert_eq!(
        scan_ascii(&noise, 2, 3),
        Scan::Stray {
            len: MAX_ASCII_FRAME
        }
    );
    // Our reply after the noise is still found: the noise ends at the next `:`.
    let reply = ascii_frame(2, &[0x03, 0x02, 0x00, 0x2A]);
    noise.extend(&reply);
    let Scan::Stray { len } = scan_ascii(&noise, 2, 3) else {
        panic!("stray")
    };
    assert_eq!(
        scan_ascii(&noise[len..], 2, 3),
        Scan::Reply {
            pdu: vec![0x03, 0x02, 0x00, 0x2A],
            len: reply.len()
        }
    );
}

#[test]
fn a_modbus_tcp_reply_is_found_by_its_transaction_id_and_a_late_one_is_skipped() {
    // The example of the Modbus TCP spec (Modbus Messaging on TCP/IP, §4.1): transaction
    // 0x0001, unit 0xFF, Read Holding Registers at 4, quantity 1.
    assert_eq!(
        mbap_frame(1, 0xFF, &[0x03, 0x00, 0x04, 0x00, 0x01]),
        vec![
            0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0xFF, 0x03, 0x00, 0x04, 0x00, 0x01
        ]
    );
    let late = mbap_frame(6, 1, &[0x03, 0x02, 0x00, 0x07]);
    let ours = mbap_frame(7, 1, &[0x03, 0x02, 0x00, 0x2A]);
    let mut stream = late.clone();
    stream.extend(&ours);
    assert_eq!(scan_mbap(&stream, 7), Scan::Stray { len: late.len() });
    assert_eq!(
        scan_mbap(&stream[late.len()..], 7),
        Scan::Reply {
            pdu: vec![0x03, 0x02, 0x00, 0x2A],
            len: ours.len()
        }
    );
    for cut in 0..ours.len() {
        assert_eq!(scan_mbap(&ours[..cut], 7), Scan::NeedMore, "{cut} bytes");
    }
    // Not a header: protocol id 1, or a length no PDU has.
    let mut bad = ours.clone();
    bad[3] = 1;
    assert_eq!(scan_mbap(&bad, 7), Scan::Garbage);
    let mut bad = ours;
    bad[5] = 0xFF;
    bad[4] = 0x01;
    assert_eq!(scan_mbap(&bad, 7), Scan::Garbage);
}
