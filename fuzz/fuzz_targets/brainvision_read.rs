//! Arbitrary bytes as a BrainVision header and marker file: a little-endian u16 giving the
//! `.vhdr`'s length, the `.vhdr`, then the `.vmrk`. The header parser (sections, `Ch<n>`
//! entries, codepages, numbers) must return a header or an error and the marker parser
//! annotations, never panic, hang or over-allocate; a header has one channel per
//! `NumberOfChannels`, a finite positive rate, and markers have finite onsets.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use neuralign_formats::brainvision::{parse_header, parse_markers};

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (vhdr, vmrk) = rest.split_at(split);
    let mut warnings = Vec::new();
    let Ok(header) = parse_header(vhdr, Path::new("fuzz.vhdr"), &mut warnings) else {
        return;
    };
    assert!(!header.channels.is_empty());
    assert!(header.rate_hz.is_finite() && header.rate_hz > 0.0, "{}", header.rate_hz);
    let (markers, _start) = parse_markers(
        vmrk,
        Path::new("fuzz.vmrk"),
        &header,
        &mut warnings,
        &mut Vec::new(),
    );
    for m in &markers {
        assert!(m.onset_s.is_finite() && m.duration_s.is_finite(), "{m:?}");
    }
});
