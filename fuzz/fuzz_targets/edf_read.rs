//! Arbitrary bytes as an EDF/EDF+/BDF file, streamed record by record as the importer reads
//! it: the header parser and the record and annotation (TAL) decoders must return records or
//! an error, never panic, hang or allocate beyond what the input can hold; every record holds
//! the samples per record the header promised for each ordinary signal, and finite onsets.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use neuralign_formats::edf::EdfReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = EdfReader::new(Cursor::new(data), "fuzz.edf", Some(data.len() as u64))
    else {
        return;
    };
    let expected: Vec<usize> = reader
        .header()
        .signals
        .iter()
        .filter(|s| !s.is_annotations())
        .map(|s| s.samples_per_record)
        .collect();
    while let Ok(Some(record)) = reader.next_record() {
        let got: Vec<usize> = record.signals.iter().map(Vec::len).collect();
        assert_eq!(got, expected);
        assert!(record.onset_s.is_finite(), "{}", record.onset_s);
        for a in &record.annotations {
            assert!(a.onset_s.is_finite(), "{a:?}");
        }
    }
});
