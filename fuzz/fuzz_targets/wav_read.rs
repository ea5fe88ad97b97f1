//! Arbitrary bytes as a WAV file, as `play` and `transcribe` read it: the RIFF chunk walk and
//! the sample decoders must return audio or an error, never panic, hang or allocate beyond
//! what the input holds; audio has a positive rate and channel count, whole frames only, and
//! every sample finite in [-1, 1] (what the resampler and the mel spectrogram can take).
#![no_main]

use libfuzzer_sys::fuzz_target;
use neuralign_formats::wav::parse_wav;

fuzz_target!(|data: &[u8]| {
    let Ok(wav) = parse_wav(data) else {
        return;
    };
    assert!(wav.rate > 0 && wav.channels > 0);
    assert_eq!(wav.samples.len() % usize::from(wav.channels), 0);
    assert!(wav.samples.len() <= data.len(), "more samples than bytes");
    assert!(
        wav.samples.iter().all(|x| (-1.0..=1.0).contains(x)),
        "a sample outside [-1, 1]"
    );
    assert!(wav.repaired <= wav.samples.len());
    assert_eq!(wav.mono().len(), wav.frames());
    assert!(wav.seconds().is_finite());
});
