//! Byte-level helpers shared by the Modbus serial framing and the profile scripts:
//! checksums (CRC-16/Modbus, LRC, sum-8, xor-8) and hex. Pure functions, no I/O.

/// CRC-16/Modbus (poly 0xA001 reflected, init 0xFFFF), sent low byte first.
pub fn crc16_modbus(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Longitudinal redundancy check of Modbus ASCII: two's complement of the byte sum.
pub fn lrc(data: &[u8]) -> u8 {
    sum8(data).wrapping_neg()
}

/// Sum of the bytes, modulo 256.
pub fn sum8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Exclusive or of the bytes.
pub fn xor8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |a, b| a ^ b)
}

/// Upper-case hex, two digits a byte (the scripts' `hex_encode`).
pub fn hex_encode(data: &[u8]) -> String {
    hex_digits(data, b"0123456789ABCDEF")
}

/// Lower-case hex, two digits a byte (EUIs, keys and addresses in config, logs, keys).
pub fn hex_lower(data: &[u8]) -> String {
    hex_digits(data, b"0123456789abcdef")
}

fn hex_digits(data: &[u8], digits: &[u8; 16]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(digits[(b >> 4) as usize] as char);
        s.push(digits[(b & 0xF) as usize] as char);
    }
    s
}

/// Accepts upper or lower case and ignores spaces; an odd digit count is an error.
pub fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("hex_decode: odd number of hex digits in {s:?}"));
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("hex_decode: {:?} is not a hex digit", c as char)),
    };
    digits
        .chunks(2)
        .map(|p| Ok((val(p[0])? << 4) | val(p[1])?))
        .collect()
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn both_hex_cases_match_the_formatter_and_decode_back() {
        let data: Vec<u8> = (0..=255).collect();
        let lower: String = data.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_lower(&data), lower);
        assert_eq!(hex_encode(&data), lower.to_uppercase());
        assert_eq!(hex_decode(&hex_lower(&data)), Ok(data));
    }
}
