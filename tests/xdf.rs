//! XDF reader and writer: hand-built files per the specification, exact round
//! trips for every channel format, damaged files, and the sample files other
//! tools wrote (tests/data/xdf, with their sources and licences).
use std::path::PathBuf;

use neuralign::xdf::{self, ChannelFormat, ReadOptions, Samples, StreamInfo, XdfWriter};

/// Builds a chunk by hand, independently of the crate's encoder.
fn chunk(tag: u16, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u64 + 2;
    let mut out = if len < 256 {
        vec![1u8, len as u8]
    } else {
        let mut v = vec![4u8];
        v.extend_from_slice(&(len as u32).to_le_bytes());
        v
    };
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn with_id(id: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = id.to_le_bytes().to_vec();
    p.extend_from_slice(rest);
    p
}

fn header(name: &str, channels: usize, rate: f64, format: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><info><name>{name}</name><type>T</type><channel_count>{channels}</channel_count>\
         <nominal_srate>{rate}</nominal_srate><channel_format>{format}</channel_format><source_id>src</source_id>\
         <desc><channels><channel><label>a</label></channel><channel><label>b</label></channel></channels></desc></info>"
    )
}

fn hand_built() -> Vec<u8> {
    let mut f = b"XDF:".to_vec();
    f.extend(chunk(
        1,
        b"<?xml version=\"1.0\"?><info><version>1.0</version></info>",
    ));
    f.extend(chunk(
        2,
        &with_id(7, header("num", 2, 10.0, "int16").as_bytes()),
    ));
    f.extend(chunk(
        2,
        &with_id(9, header("txt", 1, 0.0, "string").as_bytes()),
    ));
    // Samples of stream 7: 3 samples, the 2nd and 3rd with deduced stamps.
    let mut s = vec![1u8, 3];
    s.push(8);
    s.extend_from_slice(&100.0f64.to_le_bytes());
    s.extend_from_slice(&1i16.to_le_bytes());
    s.extend_from_slice(&(-2i16).to_le_bytes());
    for v in [3i16, 4, 5, 6] {
        if v % 2 == 1 {
            s.push(0);
        }
        s.extend_from_slice(&v.to_le_bytes());
    }
    f.extend(chunk(3, &with_id(7, &s)));
    // A string sample, length as a 4-byte varlen.
    let mut s = vec![1u8, 1, 8];
    s.extend_from_slice(&5.5f64.to_le_bytes());
    s.push(4);
    s.extend_from_slice(&3u32.to_le_bytes());
    s.extend_from_slice("héj".as_bytes()[..3].as_ref());
    f.extend(chunk(3, &with_id(9, &s)));
    let mut c = 1.0f64.to_le_bytes().to_vec();
    c.extend_from_slice(&(-0.25f64).to_le_bytes());
    f.extend(chunk(4, &with_id(7, &c)));
    f.extend(chunk(
        5,
        &[
            0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83,
            0xCB, 0xE4,
        ],
    ));
    f.extend(chunk(
        6,
        &with_id(7, b"<info><sample_count>3</sample_count></info>"),
    ));
    f
}

fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.xdf");
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn reads_hand_built_chunks_per_the_specification() {
    let (_dir, path) = temp_file(&hand_built());
    let f = xdf::read(&path).unwrap();
    assert!(f.header_xml.contains("<version>1.0</version>"));
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    let num = &f.streams[0];
    assert_eq!(
        (num.id, num.info.name.as_str(), num.info.channel_count),
        (7, "num", 2)
    );
    assert_eq!(num.info.channel_labels, ["a", "b"]);
    assert_eq!(num.time_stamps, [100.0, 100.1, 100.1 + 0.1]);
    assert_eq!(num.data, Samples::Int16(vec![1, -2, 3, 4, 5, 6]));
    assert_eq!(
        num.clock_offsets,
        [xdf::ClockOffset {
            time: 1.0,
            value: -0.25
        }]
    );
    assert!(num
        .footer_xml
        .as_deref()
        .unwrap()
        .contains("<sample_count>3"));
    let txt = &f.streams[1];
    assert_eq!(txt.info.channel_format, ChannelFormat::String);
    assert_eq!(
        (txt.time_stamps.as_slice(), &txt.data),
        (&[5.5][..], &Samples::String(vec!["hé".into()]))
    );
    assert!(txt.footer_xml.is_none());
}

#[test]
fn applies_clock_offsets_when_asked() {
    let (_dir, path) = temp_file(&hand_built());
    let options = ReadOptions {
        sync_clocks: true,
        ..Default::default()
    };
    let f = xdf::read_with(&path, options).unwrap();
    // One offset: a constant shift, as pyxdf does.
    assert_eq!(
        f.streams[0].time_stamps,
        [99.75, 100.1 - 0.25, 100.1 + 0.1 - 0.25]
    );
    assert_eq!(f.streams[1].time_stamps, [5.5], "no offsets, no change");
}

#[test]
fn file_cut_mid_chunk_loads_up_to_the_last_complete_chunk() {
    let full = hand_built();
    // Cut inside the final StreamFooter chunk.
    let cut = full.len() - 40;
    let (_dir, path) = temp_file(&full[..cut]);
    let f = xdf::read(&path).unwrap();
    assert_eq!(f.streams[0].len(), 3);
    assert!(f.streams[0].footer_xml.is_none(), "the footer was cut off");
    assert_eq!(f.streams[1].len(), 1);
    assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
    assert!(f.warnings[0].contains("ends inside a chunk"));
}

#[test]
fn corrupt_chunks_are_skipped_and_reported() {
    let mut f = b"XDF:".to_vec();
    f.extend(chunk(
        2,
        &with_id(1, header("x", 2, 0.0, "float32").as_bytes()),
    ));
    f.extend(chunk(3, &with_id(1, &[1, 5, 8, 0, 0]))); // says 5 samples, holds none
    f.extend(chunk(3, &with_id(2, &[1, 0]))); // unknown stream
    f.push(3); // invalid length width: scan to the boundary
    f.extend(chunk(
        5,
        &[
            0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83,
            0xCB, 0xE4,
        ],
    ));
    let mut s = vec![1u8, 1, 8];
    s.extend_from_slice(&2.0f64.to_le_bytes());
    s.extend_from_slice(&1.5f32.to_le_bytes());
    s.extend_from_slice(&2.5f32.to_le_bytes());
    f.extend(chunk(3, &with_id(1, &s)));
    let (_dir, path) = temp_file(&f);
    let x = xdf::read(&path).unwrap();
    assert_eq!(x.streams[0].data, Samples::Float32(vec![1.5, 2.5]));
    assert_eq!(x.streams[0].time_stamps, [2.0]);
    assert_eq!(x.warnings.len(), 3, "{:?}", x.warnings);
}

#[test]
fn a_channel_count_beyond_memory_is_a_corrupt_chunk_not_a_panic() {
    // Found while writing the xdf_read fuzz target: 8 bytes × 2^62 channels overflowed usize
    // (a panic with overflow checks, a sample of zero values without).
    let mut f = b"XDF:".to_vec();
    let huge = header("huge", 1 << 62, 100.0, "double64");
    f.extend(chunk(2, &with_id(1, huge.as_bytes())));
    f.extend(chunk(3, &with_id(1, &[1, 1, 0])));
    let xdf = xdf::read_bytes(&f, ReadOptions::default()).unwrap();
    assert_eq!(xdf.streams[0].len(), 0);
    assert!(
        xdf.warnings
            .iter()
            .any(|w| w == "corrupt Samples chunk for stream 1; skipped"),
        "{:?}",
        xdf.warnings
    );
}

#[test]
fn not_an_xdf_file_is_a_clear_error() {
    let (_dir, path) = temp_file(b"RIFF....");
    let e = xdf::read(&path).unwrap_err().to_string();
    assert!(e.contains("not an XDF file"), "{e}");
}

fn every_format() -> Vec<(StreamInfo, Samples)> {
    let n = 50usize;
    let labels = |k| (0..k).map(|c| format!("c{c}")).collect::<Vec<_>>();
    let info = |f: ChannelFormat, rate| {
        StreamInfo::with_labels(f.name(), "Test", rate, f, "sid", labels(3))
    };
    let vals = |k: usize| (0..n * 3).map(move |i| i as i64 * k as i64 - 70);
    vec![
        (
            info(ChannelFormat::Float32, 100.0),
            Samples::Float32(
                vals(1)
                    .map(|v| v as f32 / 3.0)
                    .chain([f32::MAX, f32::MIN_POSITIVE, -0.0])
                    .skip(3)
                    .collect(),
            ),
        ),
        (
            info(ChannelFormat::Double64, 512.0),
            Samples::Double64(vals(1).map(|v| v as f64 / 7.0 + 1e300).collect()),
        ),
        (
            info(ChannelFormat::Int8, 10.0),
            Samples::Int8(vals(1).map(|v| v as i8).collect()),
        ),
        (
            info(ChannelFormat::Int16, 1000.0),
            Samples::Int16(vals(300).map(|v| v as i16).collect()),
        ),
        (
            info(ChannelFormat::Int32, 0.0),
            Samples::Int32(vals(1 << 24).map(|v| v as i32).collect()),
        ),
        (
            info(ChannelFormat::Int64, 3.0),
            Samples::Int64(vals(1 << 40).collect()),
        ),
        (
            info(ChannelFormat::String, 0.0),
            Samples::String(
                (0..n * 3)
                    .map(|i| {
                        if i % 7 == 0 {
                            String::new()
                        } else {
                            format!("{{\"w\":\"ünï {i}\"}}").repeat(i % 11)
                        }
                    })
                    .collect(),
            ),
        ),
    ]
}

#[test]
fn write_then_read_is_exact_for_every_channel_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.xdf");
    let mut w = XdfWriter::create(&path).unwrap();
    let streams = every_format();
    let mut expected = Vec::new();
    for (k, (info, data)) in streams.iter().enumerate() {
        let id = w.add_stream(info).unwrap();
        let n = data.value_count() / 3;
        // Regular stamps (compressed on disk) with one irregular jump.
        let rate = if info.nominal_srate > 0.0 {
            info.nominal_srate
        } else {
            4.0
        };
        let mut ts: Vec<f64> = (0..n)
            .map(|i| 1000.0 + k as f64 + i as f64 / rate)
            .collect();
        ts[n / 2..].iter_mut().for_each(|t| *t += 0.123);
        // In two chunks, so that deduction carries across chunks.
        w.write_samples(id, &ts[..20], &data.slice(0, 60)).unwrap();
        w.write_samples(id, &ts[20..], &data.slice(60, n * 3))
            .unwrap();
        w.clock_offset(id, 1000.5, -0.001 * k as f64).unwrap();
        expected.push((info.clone(), ts, data.clone()));
    }
    w.flush_if_due().unwrap();
    w.finish().unwrap();
    let f = xdf::read(&path).unwrap();
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    assert_eq!(f.streams.len(), expected.len());
    for (s, (info, ts, data)) in f.streams.iter().zip(&expected) {
        assert_eq!(&s.info, info, "header of {}", info.name);
        assert_eq!(&s.time_stamps, ts, "stamps of {}", info.name);
        assert_eq!(&s.data, data, "values of {}", info.name);
        assert_eq!(s.clock_offsets.len(), 1);
        let footer = s.footer_xml.as_deref().unwrap();
        assert!(
            footer.contains(&format!("<sample_count>{}</sample_count>", ts.len())),
            "{footer}"
        );
    }
}

/// A stream appended to a copy of a file another tool wrote: the copy starts with the
/// original's bytes, reads back with every original stream as it was and the new one after
/// them, and the original is untouched.
#[test]
fn a_stream_appended_to_a_copy_leaves_the_original_streams_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/xdf/twochannel_string_marker.xdf");
    let original = xdf::read(&source).unwrap();
    let last_id = original.streams.iter().map(|s| s.id).max().unwrap();
    let copy = dir.path().join("copy.xdf");
    let mut w = XdfWriter::append_to_copy(&source, &copy, last_id).unwrap();
    let info = StreamInfo::new("words", "Transcript", 1, 0.0, ChannelFormat::String, "w");
    let id = w.add_stream(&info).unwrap();
    assert_eq!(id, last_id + 1);
    let words = Samples::String(vec!["{\"kind\":\"watermark\",\"time\":5.0}".into()]);
    w.write_samples(id, &[5.0], &words).unwrap();
    w.clock_offset(id, 5.0, -0.25).unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    assert!(bytes.starts_with(&std::fs::read(&source).unwrap()));
    let f = xdf::read(&copy).unwrap();
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    assert_eq!(f.streams.len(), original.streams.len() + 1);
    for (a, b) in original.streams.iter().zip(&f.streams) {
        assert_eq!(a, b, "stream {}", a.info.name);
    }
    let added = f.streams.last().unwrap();
    assert_eq!((added.id, &added.info), (id, &info));
    assert_eq!((&added.time_stamps, &added.data), (&vec![5.0], &words));
    assert_eq!(added.clock_offsets.len(), 1);
    let Err(again) = XdfWriter::append_to_copy(&source, &copy, last_id) else {
        panic!("replaced {}", copy.display())
    };
    assert!(again.to_string().contains("already exists"), "{again}");
}

#[test]
fn writer_refuses_to_overwrite_and_rejects_mismatched_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.xdf");
    let mut w = XdfWriter::create(&path).unwrap();
    let Err(again) = XdfWriter::create(&path) else {
        panic!("overwrote {}", path.display())
    };
    assert!(again.to_string().contains("already exists"), "{again}");
    let id = w
        .add_stream(&StreamInfo::new("x", "T", 2, 0.0, ChannelFormat::Int16, ""))
        .unwrap();
    assert!(w
        .write_samples(id, &[1.0], &Samples::Int32(vec![1, 2]))
        .is_err());
    assert!(w
        .write_samples(id, &[1.0], &Samples::Int16(vec![1]))
        .is_err());
    assert!(w
        .write_samples(id + 1, &[1.0], &Samples::Int16(vec![1, 2]))
        .is_err());
    w.write_samples(id, &[1.0], &Samples::Int16(vec![1, 2]))
        .unwrap();
    // Without finish (a crash), what was flushed still loads.
    w.flush().unwrap();
    let f = xdf::read(&path).unwrap();
    assert_eq!(f.streams[0].data, Samples::Int16(vec![1, 2]));
    assert!(f.streams[0].footer_xml.is_none());
}

#[test]
fn sample_files_from_other_tools_load() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/xdf");
    assert!(
        dir.join("minimal.xdf").is_file(),
        "the XDF files from other tools belong in {}",
        dir.display()
    );
    let counts = |name: &str| {
        let f = xdf::read_with(dir.join(name), ReadOptions::pyxdf()).unwrap();
        f.streams
            .iter()
            .map(|s| (s.info.name.clone(), s.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts("minimal.xdf"),
        [("SendDataC".into(), 9), ("SendDataString".into(), 9)]
    );
    assert_eq!(
        counts("clock_resets.xdf"),
        [("MyMarkerStream".into(), 175), ("BioSemi".into(), 27815)]
    );
    assert_eq!(
        counts("openbci_int32_markers.xdf")
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        [29, 5620]
    );
    assert_eq!(
        counts("empty_streams.xdf")
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        [0, 10, 1, 0]
    );
    assert_eq!(
        counts("liesl_no_offsets_no_footer.xdf")
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        [1831, 1833]
    );
    assert_eq!(
        counts("twochannel_string_marker.xdf")
            .iter()
            .map(|c| c.1)
            .collect::<Vec<_>>(),
        [1, 1]
    );
    let resets = xdf::read_with(dir.join("clock_resets.xdf"), ReadOptions::pyxdf()).unwrap();
    assert!(resets.streams.iter().all(|s| s.clock_segments.len() == 2));
}

/// Pulls every sample of `name` until `expected` arrived or `timeout_s`
/// passed; returns (stamps, receive-minus-stamp lags).
fn pull_all(source_id: &str, expected: usize, timeout_s: f64) -> (Vec<f64>, Vec<f64>) {
    use lsl::Pullable;
    let found = lsl::resolve_byprop("source_id", source_id, 1, 10.0).unwrap();
    assert!(!found.is_empty(), "stream {source_id} not found");
    let inlet = lsl::StreamInlet::new(&found[0], 360, 0, false).unwrap();
    inlet.open_stream(10.0).unwrap();
    let (mut stamps, mut lags) = (Vec::new(), Vec::new());
    let deadline = lsl::local_clock() + timeout_s;
    while stamps.len() < expected && lsl::local_clock() < deadline {
        let (sample, ts): (Vec<f32>, f64) = match inlet.pull_sample(0.2) {
            Ok(got) => got,
            Err(lsl::Error::StreamLost) => break,
            Err(e) => panic!("{e}"),
        };
        if !sample.is_empty() {
            lags.push(lsl::local_clock() - ts);
            stamps.push(ts);
        }
    }
    (stamps, lags)
}

fn simulated_session_with_seed(minutes: &str, seed: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.xdf");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_neuralign"))
        .args([
            "simulate",
            "--out",
            path.to_str().unwrap(),
            "--minutes",
            minutes,
            "--electrodes",
            "8",
            "--seed",
            seed,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    (dir, path)
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// The XDF file, the truth JSON and the truth safetensors of a simulation, as bytes.
fn simulation_bytes(xdf: &std::path::Path) -> Vec<Vec<u8>> {
    ["xdf", "truth.json", "truth.safetensors"]
        .iter()
        .map(|ext| std::fs::read(xdf.with_extension(ext)).unwrap())
        .collect()
}

#[test]
fn simulate_is_deterministic_for_a_seed() {
    let (_a, first) = simulated_session_with_seed("0.2", "7");
    let (_b, again) = simulated_session_with_seed("0.2", "7");
    let (_c, other) = simulated_session_with_seed("0.2", "8");
    let (first, again, other) = (
        simulation_bytes(&first),
        simulation_bytes(&again),
        simulation_bytes(&other),
    );
    for (k, name) in ["xdf", "truth.json", "truth.safetensors"]
        .iter()
        .enumerate()
    {
        assert!(first[k] == again[k], "{name}: same seed, different bytes");
        assert!(first[k] != other[k], "{name}: another seed, same bytes");
    }
}

#[test]
fn replay_delivers_every_sample_at_1x_and_at_max_speed() {
    use neuralign::replay::{self, ReplayOptions, Speed};
    use std::sync::{atomic::AtomicBool, Arc};
    // a seed of its own: the inlet selects the stream by its source id, which holds the seed,
    // so that another test's replay of a simulated session (same stream names) is not taken
    let (_dir, path) = simulated_session_with_seed("0.25", "4411");
    let recorded = xdf::read(&path).unwrap();
    let hg = &recorded.streams[0];
    for speed in [Speed::Factor(1.0), Speed::Max] {
        let options = ReplayOptions {
            speed,
            streams: vec!["neuralign-sim-hg".into()],
            // the test's inlet resolves the stream after the outlet appears
            wait_for_consumers: true,
            ..Default::default()
        };
        let p = path.clone();
        let player =
            std::thread::spawn(move || replay::run(&p, &options, Arc::new(AtomicBool::new(false))));
        let (stamps, mut lags) = pull_all("neuralign-sim-4411-hg", hg.len(), 60.0);
        let report = player.join().unwrap().unwrap();
        assert_eq!(report[0].samples as usize, hg.len());
        assert_eq!(stamps.len(), hg.len(), "{speed:?}: every sample arrives");
        // Relative timing is kept exactly (to float rounding of the re-basing).
        for (got, want) in stamps.windows(2).zip(hg.time_stamps.windows(2)) {
            assert!(((got[1] - got[0]) - (want[1] - want[0])).abs() < 1e-6);
        }
        if speed == Speed::Factor(1.0) {
            let (p50, p99) = (percentile(&mut lags, 0.5), percentile(&mut lags, 0.99));
            eprintln!(
                "replay 1x: send lateness p50 {:.3} ms p99 {:.3} ms; arrival lag p50 {:.3} ms p99 {:.3} ms",
                report[0].lateness_p50 * 1e3,
                report[0].lateness_p99 * 1e3,
                p50 * 1e3,
                p99 * 1e3
            );
        }
    }
}

#[test]
fn retimed_transcript_messages_move_with_their_stamp() {
    use neuralign::replay::retime_message;
    let m = r#"{"kind":"word","id":4,"text":"fox","start":10.5,"end":10.75,"final":true}"#;
    let v: serde_json::Value = serde_json::from_str(&retime_message(m, 100.0, 10)).unwrap();
    assert_eq!(
        (v["start"].as_f64(), v["end"].as_f64(), v["id"].as_i64()),
        (Some(110.5), Some(110.75), Some(14))
    );
    let w: serde_json::Value = serde_json::from_str(&retime_message(
        r#"{"kind":"watermark","time":3.0}"#,
        1.5,
        0,
    ))
    .unwrap();
    assert_eq!(w["time"].as_f64(), Some(4.5));
    assert_eq!(retime_message("plain marker", 5.0, 1), "plain marker");
}

#[test]
fn replay_keeps_equal_sender_times_equal() {
    use lsl::Pullable;
    use neuralign::replay::{self, ReplayOptions, Speed};
    use std::sync::{atomic::AtomicBool, Arc};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.xdf");
    let name = format!("replay-times-{}", std::process::id());
    let mut w = XdfWriter::create(&path).unwrap();
    let id = w
        .add_stream(&StreamInfo::new(
            &name,
            "Transcript",
            1,
            0.0,
            ChannelFormat::String,
            &name,
        ))
        .unwrap();
    // a watermark, then a word starting exactly at it (allowed: no word starts *before* a
    // watermark), at irregular stamps far from zero where rounding differs from stamp to stamp
    let (mut stamps, mut messages) = (Vec::new(), Vec::new());
    for k in 0..200 {
        let t = 15905.532568799688 + k as f64 * 0.3719;
        stamps.push(t + 1.0);
        messages.push(format!(r#"{{"kind":"watermark","time":{t}}}"#));
        stamps.push(t + 1.001 + 0.0123 * (k % 7) as f64);
        messages.push(format!(
            r#"{{"kind":"word","id":{k},"text":"w","start":{t},"end":{}}}"#,
            t + 0.2
        ));
    }
    w.write_samples(id, &stamps, &Samples::String(messages))
        .unwrap();
    w.finish().unwrap();
    let options = ReplayOptions {
        speed: Speed::Max,
        wait_for_consumers: true,
        ..Default::default()
    };
    let player =
        std::thread::spawn(move || replay::run(&path, &options, Arc::new(AtomicBool::new(false))));
    let found = lsl::resolve_byprop("name", &name, 1, 10.0).unwrap();
    assert!(!found.is_empty(), "stream {name} not found");
    let inlet = lsl::StreamInlet::new(&found[0], 360, 0, false).unwrap();
    inlet.open_stream(10.0).unwrap();
    let mut received: Vec<serde_json::Value> = Vec::new();
    let deadline = lsl::local_clock() + 30.0;
    while received.len() < 400 && lsl::local_clock() < deadline {
        let (sample, _): (Vec<String>, f64) = match inlet.pull_sample(0.2) {
            Ok(got) => got,
            Err(lsl::Error::StreamLost) => break,
            Err(e) => panic!("{e}"),
        };
        if let Some(m) = sample.first() {
            received.push(serde_json::from_str(m).unwrap());
        }
    }
    player.join().unwrap().unwrap();
    assert_eq!(received.len(), 400, "every message arrives");
    for pair in received.chunks_exact(2) {
        let (mark, word) = (pair[0]["time"].as_f64(), pair[1]["start"].as_f64());
        assert!(mark.is_some() && mark == word, "{pair:?}");
    }
}
