//! The EDF/BDF and BrainVision readers against MNE-Python's reading of real recordings
//! (`tests/data/ieeg/expected.json`), and against hand-damaged copies of them.
use std::path::{Path, PathBuf};

use neuralign_formats::brainvision::{self, BrainVisionError};
use neuralign_formats::edf::{self, EdfError, EdfHeader};
use neuralign_formats::recording::{Annotation, Recording, StartTime, Values};
use serde_json::Value;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/ieeg")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn close(ours: f64, theirs: f64, rel: f64) -> bool {
    (ours - theirs).abs() <= rel * theirs.abs().max(1e-12)
}

/// MNE's rule for duplicates: every copy of a repeated label gets `-0`, `-1`...
fn mne_unique(labels: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    labels
        .iter()
        .map(|l| {
            if labels.iter().filter(|m| *m == l).count() == 1 {
                return l.clone();
            }
            let n = seen.entry(l).or_default();
            *n += 1;
            format!("{l}-{}", *n - 1)
        })
        .collect()
}

/// `YYYY-MM-DDThh:mm:ss[.ffffff]+00:00` against our start time.
fn check_start(name: &str, ours: Option<StartTime>, theirs: &Value, sub_second_edf: bool) {
    let Some(theirs) = theirs.as_str() else {
        assert_eq!(ours, None, "{name}: MNE has no meas_date");
        return;
    };
    let ours = ours.unwrap_or_else(|| panic!("{name}: no start time, MNE has {theirs}"));
    let n = |a: usize, b: usize| theirs[a..b].parse::<u16>().unwrap();
    assert_eq!(
        (ours.year, ours.month, ours.day, ours.hour, ours.minute),
        (
            n(0, 4),
            n(5, 7) as u8,
            n(8, 10) as u8,
            n(11, 13) as u8,
            n(14, 16) as u8
        ),
        "{name}: start"
    );
    let second: f64 = theirs[17..theirs.len() - 6].parse().unwrap();
    if sub_second_edf {
        // MNE keeps whole seconds; we add the EDF+ sub-second start from the first TAL.
        assert!(
            (0.0..1.0).contains(&(ours.second - second)),
            "{name}: second {} vs {second}",
            ours.second
        );
    } else {
        assert!(
            (ours.second - second).abs() < 1e-6,
            "{name}: second {} vs {second}",
            ours.second
        );
    }
}

fn check_samples(name: &str, rec: &Recording, exp: &Value, sfreq: f64) {
    let firsts = exp["first_samples"]["channels"].as_object().unwrap();
    let names = exp["ch_names"].as_array().unwrap();
    let types = exp["ch_types"].as_array().unwrap();
    for (label, values) in firsts {
        // By position: MNE's names differ from ours where labels repeat.
        let index = names.iter().position(|n| n == label.as_str()).unwrap();
        let ch = &rec.channels[index];
        if ch.rate_hz != sfreq || types[index] == "stim" {
            // MNE resampled this one (its native rate and count are checked instead), or
            // gives a stim channel's raw codes where we scale it like any signal.
            continue;
        }
        for (i, v) in values.as_array().unwrap().iter().enumerate() {
            let v = v.as_f64().unwrap();
            assert!(
                close(ch.samples[i], v, 1e-6),
                "{name}: {label}[{i}] = {} vs MNE {v}",
                ch.samples[i]
            );
        }
    }
}

/// We keep every annotation; MNE omits those outside the data.
fn check_annotations(name: &str, rec: &Recording, ours: &[Annotation], exp: &Value) {
    let end: f64 = rec
        .segments
        .iter()
        .map(|s| s.onset_s + s.duration_s)
        .fold(0.0, f64::max);
    let ours: Vec<&Annotation> = ours
        .iter()
        .filter(|a| (0.0..end).contains(&a.onset_s))
        .collect();
    assert_eq!(
        ours.len() as u64,
        exp["n_annotations"].as_u64().unwrap(),
        "{name}: annotation count"
    );
    for (a, e) in ours.iter().zip(exp["annotations"].as_array().unwrap()) {
        assert!(
            (a.onset_s - e["onset"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: {a:?} vs {e}"
        );
        assert!(
            (a.duration_s - e["duration"].as_f64().unwrap()).abs() < 1e-6,
            "{name}: {a:?} vs {e}"
        );
        assert_eq!(a.text, e["description"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn edf_and_bdf_match_mne() {
    let all = expected();
    let mut checked = 0;
    for (name, exp) in all["files"].as_object().unwrap() {
        if !(name.ends_with(".edf") || name.ends_with(".bdf")) {
            continue;
        }
        checked += 1;
        let path = data_dir().join(name);
        let rec = edf::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let head = &exp["header"];
        let header = EdfHeader::parse(&mut std::fs::File::open(&path).unwrap(), name).unwrap();

        // Header fields, as describe.py read them.
        assert_eq!(header.n_records, head["n_records"].as_u64(), "{name}");
        assert_eq!(
            header.record_duration_s,
            head["record_duration_s"].as_f64().unwrap(),
            "{name}"
        );
        assert_eq!(
            header.signals.len() as u64,
            head["n_signals"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            header.header_bytes as u64,
            head["header_bytes"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            header.reserved,
            head["reserved_field"].as_str().unwrap(),
            "{name}"
        );
        let signals = head["signals"].as_array().unwrap();
        for (s, e) in header.signals.iter().zip(signals) {
            assert_eq!(s.label, e["label"].as_str().unwrap(), "{name}");
            assert_eq!(s.unit, e["physical_dimension"].as_str().unwrap(), "{name}");
            assert_eq!(
                s.samples_per_record as u64,
                e["samples_per_record"].as_u64().unwrap(),
                "{name}"
            );
            for (ours, key) in [
                (s.physical_min, "physical_min"),
                (s.physical_max, "physical_max"),
                (s.digital_min, "digital_min"),
                (s.digital_max, "digital_max"),
            ] {
                assert_eq!(
                    ours,
                    e[key].as_str().unwrap().parse::<f64>().unwrap(),
                    "{name} {key}"
                );
            }
        }

        // Channels: names after our duplicate rule, MNE's rule checked on the same labels.
        let labels: Vec<String> = signals
            .iter()
            .map(|s| s["label"].as_str().unwrap().to_owned())
            .filter(|l| l != "EDF Annotations" && l != "BDF Annotations")
            .collect();
        let ours: Vec<&str> = rec.channels.iter().map(|c| c.label.as_str()).collect();
        let mne: Vec<String> = exp["ch_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().into())
            .collect();
        assert_eq!(mne_unique(&labels), mne, "{name}: MNE's duplicate rule");
        let mut mine = labels.clone();
        let renamed = neuralign_formats::recording::unique_labels(&mut mine);
        assert_eq!(ours, mine, "{name}");
        assert_eq!(
            rec.warnings
                .iter()
                .filter(|w| w.contains("duplicate label"))
                .count(),
            renamed.len()
        );
        if renamed.is_empty() {
            assert_eq!(ours, mne, "{name}");
        }

        // Rates and lengths: each signal at its own rate; MNE's sfreq is the highest.
        let sfreq = exp["sfreq"].as_f64().unwrap();
        let n_times = exp["n_times"].as_u64().unwrap();
        // The records the file holds: the header's count may be -1 or lie.
        let data = head["file_bytes"].as_u64().unwrap() - header.header_bytes as u64;
        let in_file = data / header.record_bytes() as u64;
        let records = header.n_records.map_or(in_file, |n| n.min(in_file));
        let ordinary = signals
            .iter()
            .filter(|s| !s["label"].as_str().unwrap().ends_with("Annotations"));
        for (ch, s) in rec.channels.iter().zip(ordinary) {
            assert!(
                close(ch.rate_hz, s["native_sfreq"].as_f64().unwrap(), 1e-12),
                "{name}: {}",
                ch.label
            );
            let spr = s["samples_per_record"].as_u64().unwrap();
            assert_eq!(
                ch.samples.len() as u64,
                spr * records,
                "{name}: {}",
                ch.label
            );
            if ch.rate_hz == sfreq {
                assert_eq!(ch.samples.len() as u64, n_times, "{name}: {}", ch.label);
            }
            let volts = neuralign_formats::recording::volts_per_unit(&ch.unit).is_some();
            assert_eq!(ch.values == Values::Volts, volts, "{name}: {}", ch.label);
        }
        check_samples(name, &rec, exp, sfreq);
        check_annotations(name, &rec, &rec.annotations, exp);
        let plus = header.reserved.starts_with("EDF+") || header.reserved.starts_with("BDF+");
        check_start(name, rec.start, &exp["meas_date"], plus);
        if !header.is_discontinuous() {
            assert_eq!(rec.segments.len(), 1, "{name}: continuous");
        }
        let covered: f64 = rec.segments.iter().map(|s| s.duration_s).sum();
        assert!(
            close(covered, records as f64 * header.record_duration_s, 1e-12),
            "{name}"
        );
    }
    assert!(checked > 0, "no EDF/BDF recordings in expected.json");
}

#[test]
fn brainvision_matches_mne() {
    let all = expected();
    let mut checked = 0;
    for (name, exp) in all["files"].as_object().unwrap() {
        if !name.ends_with(".vhdr") {
            continue;
        }
        checked += 1;
        let path = data_dir().join(name);
        let rec = brainvision::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let header = brainvision::read_header(&path, &mut Vec::new()).unwrap();
        let head = &exp["header"];
        assert!(
            head["first_line"]
                .as_str()
                .unwrap()
                .ends_with(&header.version),
            "{name}"
        );
        let n_ch = head["NumberOfChannels"]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .unwrap();
        assert_eq!(header.channels.len(), n_ch, "{name}");
        let interval: f64 = head["SamplingInterval"].as_str().unwrap().parse().unwrap();
        assert_eq!(header.rate_hz, 1e6 / interval, "{name}");
        assert_eq!(
            header.vectorized,
            head["DataOrientation"] == "VECTORIZED",
            "{name}"
        );
        assert_eq!(
            format!("{:?}", header.binary_format),
            match head["BinaryFormat"].as_str().unwrap() {
                "INT_16" => "Int16",
                "INT_32" => "Int32",
                _ => "Float32",
            },
            "{name}"
        );
        assert_eq!(
            header.data_points,
            head["DataPoints"].as_str().map(|p| p.parse().unwrap()),
            "{name}"
        );

        let ours: Vec<&str> = rec.channels.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            ours,
            exp["ch_names"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect::<Vec<_>>()
        );
        let sfreq = exp["sfreq"].as_f64().unwrap();
        for ch in &rec.channels {
            assert_eq!(ch.rate_hz, sfreq, "{name}");
            assert_eq!(
                ch.samples.len() as u64,
                exp["n_times"].as_u64().unwrap(),
                "{name}"
            );
        }
        check_samples(name, &rec, exp, sfreq);

        // MNE also drops the leading New Segment (its date is meas_date).
        let mut kept = &rec.annotations[..];
        if kept
            .first()
            .is_some_and(|a| a.text == "New Segment/" && a.onset_s == 0.0)
        {
            kept = &kept[1..];
        }
        check_annotations(name, &rec, kept, exp);
        check_start(name, rec.start, &exp["meas_date"], false);
    }
    assert!(checked > 0, "no BrainVision recordings in expected.json");
}

/// A scratch folder of its own for each test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuralign-ieeg-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy of a sample EDF with `edit` applied to its bytes.
fn damaged_edf(test: &str, source: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(data_dir().join(source)).unwrap();
    edit(&mut bytes);
    let path = scratch(test).join("damaged.edf");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn put(bytes: &mut [u8], at: usize, width: usize, text: &str) {
    let field = format!("{text:<width$}");
    bytes[at..at + width].copy_from_slice(field.as_bytes());
}

const UNEVEN: &str = "mne-python/test_uneven_samp.edf"; // 768-byte header, 11 records of 2256 bytes

#[test]
fn truncated_edf_reads_the_full_records_and_says_so() {
    let path = damaged_edf("truncated", UNEVEN, |b| b.truncate(768 + 2 * 2256 + 1000));
    let rec = edf::read(&path).unwrap();
    assert_eq!(rec.channels[0].samples.len(), 2 * 1000);
    assert_eq!(rec.channels[1].samples.len(), 2 * 128);
    assert!(
        rec.warnings.iter().any(|w| w.contains("2 full records")),
        "{:?}",
        rec.warnings
    );
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("number_of_records says 11")),
        "{:?}",
        rec.warnings
    );
}

#[test]
fn lying_record_counts_are_caught() {
    for (count, says) in [
        ("99", "number_of_records says 99"),
        ("-1", "number_of_records is -1"),
        ("3", "says 3"),
    ] {
        let path = damaged_edf("count", UNEVEN, |b| put(b, 236, 8, count));
        let rec = edf::read(&path).unwrap();
        let expect = if count == "3" { 3 } else { 11 };
        assert_eq!(rec.channels[0].samples.len(), expect * 1000, "{count}");
        assert!(
            rec.warnings.iter().any(|w| w.contains(says)),
            "{count}: {:?}",
            rec.warnings
        );
    }
    // Records streamed from a source of unknown size stop at its end.
    let mut bytes = std::fs::read(data_dir().join(UNEVEN)).unwrap();
    put(&mut bytes, 236, 8, "20");
    let mut reader = edf::EdfReader::new(&bytes[..], "stream", None).unwrap();
    while reader.next_record().unwrap().is_some() {}
    assert_eq!(reader.records_read(), 11);
    assert!(
        reader
            .warnings()
            .iter()
            .any(|w| w.contains("11 full records")),
        "{:?}",
        reader.warnings()
    );
}

#[test]
fn lying_header_size_is_a_warning_and_the_data_still_reads() {
    let good = edf::read(data_dir().join(UNEVEN)).unwrap();
    let path = damaged_edf("hdrsize", UNEVEN, |b| put(b, 184, 8, "1024"));
    let rec = edf::read(&path).unwrap();
    assert_eq!(rec.channels, good.channels);
    assert!(
        rec.warnings.iter().any(|w| w.contains("header_bytes")),
        "{:?}",
        rec.warnings
    );
}

/// An edit of a file's bytes.
type Edit = fn(&mut Vec<u8>);

#[test]
fn broken_header_fields_are_typed_errors_naming_the_field() {
    let cases: [(&str, Edit); 5] = [
        ("record_duration", |b| put(b, 244, 8, "0")),
        ("record_duration", |b| put(b, 244, 8, "-1")),
        ("number_of_signals", |b| {
            b[252..256].copy_from_slice(b"2\xff\xfe ")
        }),
        ("signal 2 physical_min", |b| {
            put(b, 256 + 2 * (16 + 80 + 8) + 8, 8, "abc")
        }),
        ("signal 1 samples_per_record", |b| {
            put(b, 256 + 2 * (16 + 80 + 8 + 32 + 80), 8, "-5")
        }),
    ];
    for (field, edit) in cases {
        let path = damaged_edf("fields", UNEVEN, edit);
        match edf::read(&path) {
            Err(e @ EdfError::Field { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(field) && msg.contains("damaged.edf"), "{msg}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let path = damaged_edf("notedf", UNEVEN, |b| b[0] = b'X');
    assert!(matches!(edf::read(&path), Err(EdfError::NotEdf { .. })));
    let path = damaged_edf("short", UNEVEN, |b| b.truncate(600));
    assert!(matches!(
        edf::read(&path),
        Err(EdfError::ShortHeader { needed: 768, .. })
    ));
}

#[test]
fn digital_min_equal_max_leaves_digital_values_with_a_warning() {
    // Signal 2's digital_max set to its digital_min (-100).
    let path = damaged_edf("dminmax", UNEVEN, |b| {
        put(b, 256 + 2 * (16 + 80 + 8 + 8 + 8 + 8) + 8, 8, "-100")
    });
    let rec = edf::read(&path).unwrap();
    assert_eq!(rec.channels[1].values, Values::Digital);
    assert_eq!(rec.channels[0].values, Values::Volts);
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("digital_min == digital_max")),
        "{:?}",
        rec.warnings
    );
}

/// A small EDF+ writer: one 2-sample signal in µV and a 15-sample annotation signal
/// carrying each record's TALs.
fn edf_plus(reserved: &str, records: &[(&str, [i16; 2])]) -> Vec<u8> {
    let tal_samples = 15;
    let mut b = vec![b' '; 256 * 3];
    put(&mut b, 0, 8, "0");
    put(&mut b, 88, 80, "Startdate 02-MAR-2121 X X X");
    put(&mut b, 168, 8, "02.03.yy");
    put(&mut b, 176, 8, "10.20.30");
    put(&mut b, 184, 8, "768");
    put(&mut b, 192, 44, reserved);
    put(&mut b, 236, 8, &records.len().to_string());
    put(&mut b, 244, 8, "1");
    put(&mut b, 252, 4, "2");
    let mut at = 256;
    for (width, values) in [
        (16, ["X", "EDF Annotations"]),
        (80, ["", ""]),
        (8, ["uV", ""]),
        (8, ["-100", "-1"]),
        (8, ["100", "1"]),
        (8, ["-100", "-32768"]),
        (8, ["100", "32767"]),
        (80, ["", ""]),
        (8, ["2", "15"]),
        (32, ["", ""]),
    ] {
        for v in values {
            let field = format!("{v:<width$}");
            let bytes: Vec<u8> = field.bytes().take(width).collect();
            b[at..at + bytes.len()].copy_from_slice(&bytes);
            at += width;
        }
    }
    b.truncate(768);
    for (tals, samples) in records {
        for s in samples {
            b.extend(s.to_le_bytes());
        }
        let mut tal = tals.as_bytes().to_vec();
        tal.resize(tal_samples * 2, 0);
        b.extend(tal);
    }
    b
}

#[test]
fn edf_plus_discontinuous_keeps_gaps_and_annotations() {
    let bytes = edf_plus(
        "EDF+D",
        &[
            ("+0.25\x14\x14\0", [1, 2]),
            ("+1.25\x14\x14\0+1.5\x151\x14on\x14\0", [3, 4]),
            ("+10.25\x14\x14\0", [5, 6]),
        ],
    );
    let mut bytes = bytes;
    // The first label in latin-1 (µ is 0xB5, not valid UTF-8).
    bytes[256..259].copy_from_slice(b"X \xb5");
    bytes[259..272].fill(b' ');
    let path = scratch("edfd").join("d.edf");
    std::fs::write(&path, bytes).unwrap();
    let rec = edf::read(&path).unwrap();
    assert_eq!(rec.channels.len(), 1);
    for (ours, value) in rec.channels[0]
        .samples
        .iter()
        .zip([1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6])
    {
        assert!(close(*ours, value, 1e-12), "{ours} vs {value}");
    }
    assert_eq!(rec.channels[0].rate_hz, 2.0);
    assert_eq!(rec.segments.len(), 2);
    assert_eq!(
        (rec.segments[0].onset_s, rec.segments[0].duration_s),
        (0.0, 2.0)
    );
    assert_eq!(
        (rec.segments[1].onset_s, rec.segments[1].duration_s),
        (10.0, 1.0)
    );
    assert_eq!(rec.annotations.len(), 1);
    assert_eq!(
        (rec.annotations[0].onset_s, rec.annotations[0].duration_s),
        (1.25, 1.0)
    );
    assert_eq!(rec.annotations[0].text, "on");
    let start = rec.start.unwrap();
    assert_eq!(
        (start.year, start.month, start.day, start.second),
        (2121, 3, 2, 30.25)
    );
    assert_eq!(rec.channels[0].label, "X µ");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
}

#[test]
fn bad_tals_are_counted_warnings() {
    let bytes = edf_plus(
        "EDF+C",
        &[
            ("+0.5\x14\x14\0", [1, 2]),
            ("1\x14\x14\0", [3, 4]),
            ("+2.5\x14x\x14\0", [5, 6]),
        ],
    );
    let path = scratch("badtal").join("t.edf");
    std::fs::write(&path, bytes).unwrap();
    let rec = edf::read(&path).unwrap();
    assert_eq!(rec.channels[0].samples.len(), 6);
    let bad = |w: &&String| w.contains("record 2") && w.contains("no valid onset");
    assert_eq!(
        rec.warnings.iter().filter(bad).count(),
        1,
        "{:?}",
        rec.warnings
    );
    // Record 2's TAL is invalid and record 3's first TAL is an annotation, not time-keeping:
    // each is placed right after its predecessor, so nothing invents a gap.
    let missing = |w: &&String| w.contains("no time-keeping TAL");
    assert_eq!(
        rec.warnings.iter().filter(missing).count(),
        2,
        "{:?}",
        rec.warnings
    );
    assert_eq!(rec.segments.len(), 1);
    assert_eq!(
        (rec.segments[0].onset_s, rec.segments[0].duration_s),
        (0.0, 3.0)
    );
    assert_eq!(rec.annotations.len(), 1);
    assert_eq!(rec.annotations[0].onset_s, 2.0);
    assert_eq!(rec.annotations[0].text, "x");
    assert_eq!(rec.start.unwrap().second, 30.5);
}

/// A copy of `test.vhdr` with its `.vmrk` and `.eeg`, each edited.
fn damaged_brainvision(test: &str, vhdr: &str, vmrk: &str, eeg_len: Option<usize>) -> PathBuf {
    let dir = scratch(test);
    let src = data_dir().join("mne-python");
    let text = |f: &str| std::fs::read_to_string(src.join(f)).unwrap();
    std::fs::write(
        dir.join("test.vhdr"),
        text("test.vhdr").replace("BinaryFormat=INT_16", vhdr),
    )
    .unwrap();
    std::fs::write(
        dir.join("test.vmrk"),
        text("test.vmrk").replace("DataFile=test.eeg", vmrk),
    )
    .unwrap();
    let mut eeg = std::fs::read(src.join("test.eeg")).unwrap();
    if let Some(len) = eeg_len {
        eeg.truncate(len);
    }
    std::fs::write(dir.join("test.eeg"), eeg).unwrap();
    dir.join("test.vhdr")
}

#[test]
fn vmrk_naming_another_data_file_is_a_warning() {
    let path = damaged_brainvision("vmrk", "BinaryFormat=INT_16", "DataFile=other.eeg", None);
    let rec = brainvision::read(&path).unwrap();
    assert!(
        rec.warnings
            .iter()
            .any(|w| w.contains("\"other.eeg\"") && w.contains("test.vmrk")),
        "{:?}",
        rec.warnings
    );
}

#[test]
fn unknown_binary_format_is_an_error() {
    let path = damaged_brainvision("format", "BinaryFormat=UINT_16", "DataFile=test.eeg", None);
    match brainvision::read(&path) {
        Err(e @ BrainVisionError::Field { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("BinaryFormat")
                    && msg.contains("UINT_16")
                    && msg.contains("test.vhdr"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn brainvision_data_of_partial_samples_is_never_silent() {
    // Multiplexed: the partial last sample is dropped with a warning.
    let path = damaged_brainvision(
        "partial",
        "BinaryFormat=INT_16",
        "DataFile=test.eeg",
        Some(64 * 100 + 10),
    );
    let rec = brainvision::read(&path).unwrap();
    assert_eq!(rec.channels[0].samples.len(), 100);
    assert!(
        rec.warnings.iter().any(|w| w.contains("partial sample")),
        "{:?}",
        rec.warnings
    );
    // Vectorized: the layout cannot be known, so it is an error.
    let dir = scratch("vector");
    let src = data_dir().join("mne-python");
    for f in ["vhdr", "vmrk"] {
        let name = format!("test_old_layout_latin1_software_filter.{f}");
        std::fs::copy(src.join(&name), dir.join(&name)).unwrap();
    }
    let eeg = std::fs::read(src.join("test_old_layout_latin1_software_filter.eeg")).unwrap();
    std::fs::write(
        dir.join("test_old_layout_latin1_software_filter.eeg"),
        &eeg[..eeg.len() - 4],
    )
    .unwrap();
    let path = dir.join("test_old_layout_latin1_software_filter.vhdr");
    assert!(matches!(
        brainvision::read(&path),
        Err(BrainVisionError::DataSize { .. })
    ));
}

#[test]
fn brainvision_utf8_bom_and_escaped_commas() {
    let dir = scratch("bom");
    let src = data_dir().join("mne-python");
    let vhdr = std::fs::read_to_string(src.join("test.vhdr")).unwrap();
    let vhdr = vhdr
        .replace("Codepage=UTF-8\n", "")
        .replace("Ch1=FP1,,0.5,µV", "Ch1=F\\1P1 µ,,0.5,mV");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(vhdr.as_bytes());
    std::fs::write(dir.join("test.vhdr"), bytes).unwrap();
    std::fs::copy(src.join("test.vmrk"), dir.join("test.vmrk")).unwrap();
    std::fs::copy(src.join("test.eeg"), dir.join("test.eeg")).unwrap();
    let rec = brainvision::read(dir.join("test.vhdr")).unwrap();
    assert_eq!(rec.channels[0].label, "F,P1 µ");
    assert!(
        close(rec.channels[0].samples[0], -2.35e-2, 1e-9),
        "mV scaled: {}",
        rec.channels[0].samples[0]
    );
    // Odd units stay unscaled and are reported.
    let cp6 = rec.channels.iter().find(|c| c.label == "CP6").unwrap();
    assert_eq!((cp6.values, cp6.unit.as_str()), (Values::Physical, "µS"));
    assert!(
        rec.warnings.iter().any(|w| w.contains("CP6")),
        "{:?}",
        rec.warnings
    );
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(512))]

    /// Any bytes of a real EDF+ header or its first records overwritten, and the file cut
    /// anywhere: an error or warnings, never a panic.
    #[test]
    fn damaged_edf_never_panics(
        edits in proptest::collection::vec((0usize..768 + 2 * 308, proptest::num::u8::ANY), 1..12),
        cut in 0usize..215_752,
        declare_len: bool,
    ) {
        let mut bytes = std::fs::read(data_dir().join("pyedflib/test_utf8.edf")).unwrap();
        for (at, byte) in edits {
            bytes[at] = byte;
        }
        bytes.truncate(cut.max(256));
        let len = declare_len.then_some(bytes.len() as u64);
        if let Ok(mut reader) = edf::EdfReader::new(&bytes[..], "fuzz.edf", len) {
            while let Ok(Some(_)) = reader.next_record() {}
        }
    }
}

#[test]
fn brainvision_latin1_labels_and_base_name_placeholder() {
    let dir = scratch("latin1");
    let src = data_dir().join("mne-python");
    let stem = "test_old_layout_latin1_software_filter";
    // The header has no Codepage, so it is latin-1: edit it as latin-1 text.
    let bytes = std::fs::read(src.join(format!("{stem}.vhdr"))).unwrap();
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    let text = text
        .replace("Ch1=F7,", "Ch1=F7\u{B5},")
        .replace(&format!("DataFile={stem}.eeg"), "DataFile=$b.eeg");
    let latin1: Vec<u8> = text.chars().map(|c| u8::try_from(c).unwrap()).collect();
    std::fs::write(dir.join("renamed.vhdr"), latin1).unwrap();
    std::fs::copy(src.join(format!("{stem}.eeg")), dir.join("renamed.eeg")).unwrap();
    std::fs::copy(
        src.join(format!("{stem}.vmrk")),
        dir.join(format!("{stem}.vmrk")),
    )
    .unwrap();
    let rec = brainvision::read(dir.join("renamed.vhdr")).unwrap();
    assert_eq!(rec.channels[0].label, "F7µ");
    assert_eq!(rec.channels[0].samples.len(), 251);
    // The .vmrk still names the original data file.
    let other = rec
        .warnings
        .iter()
        .any(|w| w.contains("markers may belong"));
    assert!(other, "{:?}", rec.warnings);
}

#[test]
fn streamed_records_add_up_to_the_whole_file_read() {
    let path = data_dir().join("pyedflib/test_generator_datarec_generator_2.bdf");
    let whole = edf::read(&path).unwrap();
    let mut reader = edf::EdfReader::open(&path).unwrap();
    let mut streamed = vec![Vec::new(); whole.channels.len()];
    let mut onsets = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        onsets.push(record.onset_s);
        for (all, part) in streamed.iter_mut().zip(record.signals) {
            all.extend(part);
        }
    }
    assert_eq!(
        onsets,
        (0..15).map(|k| 2.0 * f64::from(k)).collect::<Vec<_>>()
    );
    for (ch, samples) in whole.channels.iter().zip(streamed) {
        assert_eq!(ch.samples, samples, "{}", ch.label);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(128))]

    /// Any bytes of a real header and marker file overwritten, the data cut anywhere: an
    /// error or warnings, never a panic.
    #[test]
    fn damaged_brainvision_never_panics(
        vhdr_edits in proptest::collection::vec((0usize..2683, proptest::num::u8::ANY), 0..8),
        vmrk_edits in proptest::collection::vec((0usize..1816, proptest::num::u8::ANY), 0..8),
        cut in 0usize..505_600,
    ) {
        let dir = scratch("bvfuzz");
        let src = data_dir().join("mne-python");
        for (name, edits) in [("testv2.vhdr", &vhdr_edits), ("testv2.vmrk", &vmrk_edits)] {
            let mut bytes = std::fs::read(src.join(name)).unwrap();
            for &(at, byte) in edits {
                bytes[at] = byte;
            }
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let eeg = std::fs::read(src.join("test.eeg")).unwrap();
        std::fs::write(dir.join("test.eeg"), &eeg[..cut]).unwrap();
        let _ = brainvision::read(dir.join("testv2.vhdr"));
    }
}

#[test]
fn import_keeps_edf_plus_d_gaps_as_gaps_in_the_time_stamps() {
    use neuralign_formats::import::{import, ImportOptions};
    use neuralign_formats::xdf::{self, Samples};
    let bytes = edf_plus(
        "EDF+D",
        &[
            ("+0.25\x14\x14\0", [1, 2]),
            ("+1.25\x14\x14\0+1.5\x151\x14on\x14\0", [3, 4]),
            ("+10.25\x14\x14\0", [5, 6]),
        ],
    );
    let dir = scratch("import-edfd");
    let path = dir.join("d.edf");
    std::fs::write(&path, bytes).unwrap();
    let out = dir.join("d.xdf");
    let _ = std::fs::remove_file(&out);
    let report = import(&path, &out, &ImportOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(report.streams[0].samples, 6);
    assert_eq!(
        report.recording.start.as_deref(),
        Some("2121-03-02T10:20:30.250000")
    );
    let file = xdf::read(&out).unwrap();
    let neural = &file.streams[0];
    assert_eq!(neural.time_stamps, [0.0, 0.5, 1.0, 1.5, 10.0, 10.5]);
    assert_eq!(
        neural.data,
        Samples::Float32(vec![1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6])
    );
    let markers = &file.streams[1];
    assert_eq!(markers.info.stream_type, "Markers");
    assert_eq!(markers.time_stamps, [1.25]);
    assert_eq!(markers.data, Samples::String(vec!["on".into(), "1".into()]));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "the temporary file is gone");
}
