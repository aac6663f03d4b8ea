//! Cutting a serial byte stream into frames (pure; time is passed in by the caller).
//!
//! Invariants: no frame is ever longer than `max_frame`; an overlong run of bytes is
//! dropped up to the next frame boundary (the next delimiter, or the next silence for
//! length and idle framing), so noise costs at most one frame. A delimiter is never part
//! of a frame.

use crate::profile::SerialFraming;

/// What the framer produced from some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    Frame(Vec<u8>),
    /// Bytes thrown away: a frame longer than `max_frame` (counted, logged).
    Overlong(usize),
}

#[derive(Debug)]
pub struct Framer {
    framing: SerialFraming,
    max_frame: usize,
    buf: Vec<u8>,
    /// Dropping an overlong frame until the next boundary.
    discarding: usize,
}

impl Framer {
    pub fn new(framing: SerialFraming, max_frame: usize) -> Framer {
        Framer {
            framing,
            max_frame,
            buf: Vec::with_capacity(max_frame.min(4096)),
            discarding: 0,
        }
    }

    /// Whether bytes wait for the end of their frame (idle framing flushes them on silence).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.discarding > 0
    }

    pub fn is_idle_framing(&self) -> bool {
        matches!(self.framing, SerialFraming::IdleMs(_))
    }

    /// Feeds received bytes; complete frames and drops are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Framed>) {
        for &b in bytes {
            self.push_byte(b, out);
        }
    }

    fn push_byte(&mut self, b: u8, out: &mut Vec<Framed>) {
        match &self.framing {
            SerialFraming::Delimiter(delim) => {
                if self.discarding > 0 {
                    // Keep only enough tail to recognize the delimiter.
                    self.discarding += 1;
                    self.buf.push(b);
                    if self.buf.ends_with(delim) {
                        out.push(Framed::Overlong(self.discarding - delim.len()));
                        self.discarding = 0;
                        self.buf.clear();
                    } else if self.buf.len() >= delim.len() {
                        self.buf.drain(..self.buf.len() + 1 - delim.len());
                    }
                    return;
                }
                self.buf.push(b);
                if self.buf.ends_with(delim) {
                    let n = self.buf.len() - delim.len();
                    self.buf.truncate(n);
                    out.push(Framed::Frame(std::mem::take(&mut self.buf)));
                } else if self.buf.len() > self.max_frame + delim.len() - 1 {
                    // Too long to ever become a valid frame: drop until the next delimiter.
                    self.discarding = self.buf.len();
                    let keep = delim.len() - 1;
                    self.buf.drain(..self.buf.len() - keep);
                }
            }
            SerialFraming::Length(n) => {
                let n = *n;
                self.buf.push(b);
                if self.buf.len() == n {
                    out.push(Framed::Frame(std::mem::take(&mut self.buf)));
                }
            }
            SerialFraming::IdleMs(_) => {
                if self.discarding > 0 {
                    self.discarding += 1;
                    return;
                }
                self.buf.push(b);
                if self.buf.len() > self.max_frame {
                    self.discarding = self.buf.len();
                    self.buf.clear();
                }
            }
        }
    }

    /// The line went silent: idle framing ends its frame; the other framings drop a
    /// partial frame (resynchronization after noise or a cut-off frame).
    pub fn silence(&mut self, out: &mut Vec<Framed>) {
        let idle = self.is_idle_framing();
        if self.discarding > 0 {
            out.push(Framed::Overlong(self.discarding));
        } else if !self.buf.is_empty() {
            if idle {
                out.push(Framed::Frame(std::mem::take(&mut self.buf)));
            } else {
                out.push(Framed::Overlong(self.buf.len()));
            }
        }
        self.discarding = 0;
        self.buf.clear();
    }

    /// Forgets everything buffered (before sending a request: stale bytes are not a reply).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = 0;
    }
}

#[cfg(test)]
mod tests {
    //! Framing rules: delimiters, lengths, silences, overlong frames and resync.
    use super::*;

    fn run(f: &mut Framer, bytes: &[u8]) -> Vec<Framed> {
        let mut out = Vec::new();
        f.push(bytes, &mut out);
        out
    }
    fn frame(s: &[u8]) -> Framed {
        Framed::Frame(s.to_vec())
    }

    #[test]
    fn delimited_frames_are_cut_without_the_delimiter_across_reads() {
        let mut f = Framer::new(SerialFraming::Delimiter(b"\r\n".to_vec()), 16);
        assert_eq!(run(&mut f, b"VOL=1\r"), vec![]);
        assert_eq!(
            run(&mut f, b"\nMUTE=0\r\n\r\n"),
            vec![frame(b"VOL=1"), frame(b"MUTE=0"), frame(b"")]
        );
    }

    #[test]
    fn an_overlong_frame_is_dropped_and_the_next_one_decodes() {
        let mut f = Framer::new(SerialFraming::Delimiter(b"\r\n".to_vec()), 8);
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\r\nOK\r\n");
        assert_eq!(
            run(&mut f, &input),
            vec![Framed::Overlong(100), frame(b"OK")]
        );
        // Exactly max_frame is fine.
        assert_eq!(run(&mut f, b"12345678\r\n"), vec![frame(b"12345678")]);
    }

    #[test]
    fn fixed_length_frames_resync_on_silence() {
        let mut f = Framer::new(SerialFraming::Length(4), 16);
        assert_eq!(run(&mut f, b"abcdef"), vec![frame(b"abcd")]);
        let mut out = Vec::new();
        f.silence(&mut out);
        assert_eq!(out, vec![Framed::Overlong(2)]);
        assert_eq!(run(&mut f, b"wxyz"), vec![frame(b"wxyz")]);
    }

    #[test]
    fn idle_framing_ends_a_frame_on_silence_and_bounds_it() {
        let mut f = Framer::new(SerialFraming::IdleMs(20), 4);
        assert_eq!(run(&mut f, b"abc"), vec![]);
        assert!(f.has_partial());
        let mut out = Vec::new();
        f.silence(&mut out);
        assert_eq!(out, vec![frame(b"abc")]);
        assert_eq!(run(&mut f, b"abcdefg"), vec![]);
        out.clear();
        f.silence(&mut out);
        assert_eq!(out, vec![Framed::Overlong(7)]);
    }
}
