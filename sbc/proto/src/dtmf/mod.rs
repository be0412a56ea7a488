//! DTMF interworking, sans I/O: RFC 4733 telephone-event payloads, DTMF in SIP INFO bodies,
//! generating the packets of a digit and recognising digits in a received event stream.
//! The relay and the B2BUA use these to convert between the two methods per side; digit
//! values are data for the far side only, never logged (they are PINs).

mod detector;
mod event;
mod generator;
mod info;

pub use detector::{Detected, Detector};
pub use event::{Digit, EVENT_LEN, Event};
pub use generator::{END_REPEATS, Planned, VOLUME, schedule};
pub use info::{InfoDigit, InfoFormat, MAX_DURATION_MS, parse as parse_info, write as write_info};

#[cfg(test)]
mod tests {
    /// The fuzz target's properties over its committed seeds and a few edge inputs.
    #[test]
    fn fuzz_properties_hold_on_the_seeds() {
        let seeds: &[&[u8]] = &[
            b"Signal=5\r\nDuration=160\r\n",
            b"#\r\n",
            b"\x00\x00\x03\xe8\x05\x0a\x01\x90\x00\x00\x03\xe8\x05\x8a\x03\x20",
            b"Signal=\xff",
            b"",
        ];
        for s in seeds {
            crate::fuzzing::dtmf(s);
        }
    }
}
