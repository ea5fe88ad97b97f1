//! Arbitrary bytes as an XDF file: the first byte picks the read options (clock sync, reset
//! handling, dejitter), the rest is the file. Reading must return a file or an error, never
//! panic, hang or allocate beyond what the input can hold; what it returns must be
//! self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuralign_formats::xdf::{read_bytes, ReadOptions, XdfError};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, file)) = data.split_first() else {
        return;
    };
    let options = ReadOptions {
        sync_clocks: flags & 1 != 0,
        handle_clock_resets: flags & 2 != 0,
        dejitter: flags & 4 != 0,
    };
    match read_bytes(file, options) {
        Ok(xdf) => {
            for s in &xdf.streams {
                let n = s.len();
                assert_eq!(s.data.value_count(), n * s.info.channel_count, "stream {}", s.id);
                assert_eq!(s.data.format(), s.info.channel_format);
                for &(a, b) in s.segments.iter().chain(&s.clock_segments) {
                    assert!(a <= b && b < n, "segment {a}..={b} of {n} samples");
                }
            }
        }
        Err(XdfError::NotXdf(_)) => {}
        Err(e) => panic!("in-memory read failed with {e}"),
    }
});
