//! Speech with known word times, the ground truth of `neuralign bench asr`: Debian's
//! espeak-ng (`libespeak-ng.so.1`, loaded at run time) synthesises a text and reports each
//! word's audio position as it renders it (`espeakEVENT_WORD`). The tests'
//! `tools/espeak_words.py` makes the same calls from Python.
//!
//! espeak-ng speaks a few pairs as one word ("of the") with one event: the second word has no
//! onset of its own (it counts for the word error rate, not for onset errors).
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::sync::Mutex;

use libloading::{Library, Symbol};

use super::AsrError;
use crate::wav::{Wav, WavSampleFormat};
use crate::word_table::TableWord;

/// A synthesised text: its audio and every word with espeak-ng's onset.
#[derive(Debug, Clone)]
pub struct Synthesis {
    /// Mono 16-bit audio at espeak-ng's rate (22 050 Hz).
    pub audio: Wav,
    /// Every word of the text in order; `start` is espeak-ng's onset (none for the second
    /// word of a pair spoken as one), `end` the next onset (the last word's, the audio's end).
    pub words: Vec<TableWord>,
}

// espeak-ng's C API (speak_lib.h), the calls this file makes.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
const EVENT_LIST_TERMINATED: c_int = 0;
const EVENT_WORD: c_int = 1;
const POS_CHARACTER: c_int = 1;
const CHARS_UTF8: c_uint = 1;
const PARAMETER_RATE: c_int = 1;

/// `espeak_EVENT`.
#[repr(C)]
struct Event {
    kind: c_int,
    unique_identifier: c_uint,
    text_position: c_int,
    length: c_int,
    audio_position: c_int,
    sample: c_int,
    user_data: *mut c_void,
    id: [u8; 8],
}

type SynthCallback = unsafe extern "C" fn(*mut i16, c_int, *mut Event) -> c_int;

/// What the callback collects: samples and `(text position, audio position ms)` per word.
#[derive(Default)]
struct Collected {
    samples: Vec<i16>,
    words: Vec<(usize, f64)>,
}

unsafe extern "C" fn on_audio(wav: *mut i16, count: c_int, events: *mut Event) -> c_int {
    // SAFETY: espeak-ng passes `count` samples at `wav` (or null) and a list of events ended
    // by EVENT_LIST_TERMINATED, each carrying the `user_data` given to `espeak_Synth`: a
    // `Collected` that outlives the synchronous call.
    unsafe {
        let mut k = 0;
        let mut collected: Option<&mut Collected> = None;
        while (*events.add(k)).kind != EVENT_LIST_TERMINATED {
            let e = &*events.add(k);
            let c = collected.get_or_insert_with(|| &mut *(e.user_data as *mut Collected));
            if e.kind == EVENT_WORD {
                c.words.push((
                    e.text_position as usize,
                    f64::from(e.audio_position) / 1000.0,
                ));
            }
            k += 1;
        }
        let c = collected.or_else(|| (*events).user_data.cast::<Collected>().as_mut());
        if let (Some(c), false, true) = (c, wav.is_null(), count > 0) {
            c.samples
                .extend_from_slice(std::slice::from_raw_parts(wav, count as usize));
        }
    }
    0
}

/// espeak-ng keeps global state: one synthesis at a time.
static ESPEAK: Mutex<()> = Mutex::new(());

/// Synthesises `text` at `wpm` words per minute with `voice` (e.g. `en-us`).
pub fn synthesise(text: &str, wpm: u32, voice: &str) -> Result<Synthesis, AsrError> {
    let _one = ESPEAK.lock().unwrap_or_else(|e| e.into_inner());
    let missing = |e: libloading::Error| {
        AsrError::Audio(format!(
            "espeak-ng is needed to synthesise speech with known word times ({e}); \
             install it with `apt-get install espeak-ng`"
        ))
    };
    // SAFETY: the symbols are espeak-ng's C API with the signatures of speak_lib.h; the
    // library stays loaded for the whole synthesis.
    unsafe {
        let lib = Library::new("libespeak-ng.so.1").map_err(missing)?;
        let initialize: Symbol<unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int> =
            lib.get(b"espeak_Initialize").map_err(missing)?;
        let set_voice: Symbol<unsafe extern "C" fn(*const c_char) -> c_int> =
            lib.get(b"espeak_SetVoiceByName").map_err(missing)?;
        let set_parameter: Symbol<unsafe extern "C" fn(c_int, c_int, c_int) -> c_int> =
            lib.get(b"espeak_SetParameter").map_err(missing)?;
        let set_callback: Symbol<unsafe extern "C" fn(SynthCallback)> =
            lib.get(b"espeak_SetSynthCallback").map_err(missing)?;
        #[allow(clippy::type_complexity)]
        let synth: Symbol<
            unsafe extern "C" fn(
                *const c_void,
                usize,
                c_uint,
                c_int,
                c_uint,
                c_uint,
                *mut c_uint,
                *mut c_void,
            ) -> c_int,
        > = lib.get(b"espeak_Synth").map_err(missing)?;
        let synchronize: Symbol<unsafe extern "C" fn() -> c_int> =
            lib.get(b"espeak_Synchronize").map_err(missing)?;

        let rate = initialize(AUDIO_OUTPUT_SYNCHRONOUS, 500, std::ptr::null(), 0);
        if rate <= 0 {
            return Err(AsrError::Audio(
                "espeak_Initialize failed: is espeak-ng-data installed?".into(),
            ));
        }
        let voice_c = CString::new(voice)
            .map_err(|_| AsrError::Audio(format!("voice name {voice:?} has a NUL byte")))?;
        if set_voice(voice_c.as_ptr()) != 0 {
            return Err(AsrError::Audio(format!("espeak-ng has no voice {voice:?}")));
        }
        set_parameter(PARAMETER_RATE, wpm as c_int, 0);
        set_callback(on_audio);
        let text_c = CString::new(text)
            .map_err(|_| AsrError::Audio("the text to synthesise has a NUL byte".into()))?;
        let mut collected = Collected::default();
        let status = synth(
            text_c.as_ptr().cast(),
            text.len() + 1,
            0,
            POS_CHARACTER,
            0,
            CHARS_UTF8,
            std::ptr::null_mut(),
            (&mut collected as *mut Collected).cast(),
        );
        synchronize();
        if status != 0 {
            return Err(AsrError::Audio(format!("espeak_Synth failed ({status})")));
        }
        Ok(synthesis(text, rate as u32, collected))
    }
}

/// The audio and the text's words with the onsets of their events (text positions count
/// characters from 1).
fn synthesis(text: &str, rate: u32, collected: Collected) -> Synthesis {
    let seconds = collected.samples.len() as f64 / f64::from(rate);
    let onset_at: std::collections::HashMap<usize, f64> = collected.words.into_iter().collect();
    let mut words: Vec<TableWord> = Vec::new();
    let mut in_word = false;
    for (chars, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            in_word = false;
        } else if in_word {
            words.last_mut().expect("in a word").text.push(c);
        } else {
            in_word = true;
            words.push(TableWord {
                text: c.to_string(),
                start: onset_at.get(&(chars + 1)).copied(),
                end: None,
            });
        }
    }
    let onsets: Vec<f64> = words.iter().filter_map(|w| w.start).collect();
    for w in &mut words {
        w.end = w
            .start
            .map(|s| onsets.iter().copied().find(|&t| t > s).unwrap_or(seconds));
    }
    Synthesis {
        audio: Wav {
            rate,
            channels: 1,
            format: WavSampleFormat::Int(16),
            samples: collected
                .samples
                .iter()
                .map(|&s| f32::from(s) / 32_768.0)
                .collect(),
            truncated: false,
            repaired: 0,
        },
        words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_get_the_onsets_of_their_events_and_end_at_the_next() {
        let collected = Collected {
            samples: vec![0; 22_050],
            words: vec![(1, 0.1), (6, 0.3), (14, 0.6)],
        };
        // "of the" spoken as one word: "the" has no event of its own
        let s = synthesis("Cats of the  éte", 22_050, collected);
        let got: Vec<_> = s
            .words
            .iter()
            .map(|w| (w.text.as_str(), w.start, w.end))
            .collect();
        assert_eq!(
            got,
            [
                ("Cats", Some(0.1), Some(0.3)),
                ("of", Some(0.3), Some(0.6)),
                ("the", None, None),
                ("éte", Some(0.6), Some(1.0)),
            ]
        );
    }
}
