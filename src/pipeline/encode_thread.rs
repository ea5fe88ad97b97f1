//! The encode thread: computes each word's kernels (PCA projection and TRF kernel, every
//! electrode and layer; milliseconds a word) off the core loop, so that neural samples never
//! wait behind a word. Every LM output goes through it in order (words with their kernels,
//! retractions, watermarks and segments unchanged), so the core loop sees the order the LM thread sent
//! and only adds kernels to the timeline.
//!
//! The encoders are those the core loop bound to the current neural stream ([`Binding`]);
//! while none is bound, or when the binding changes under a word, the word goes on without
//! kernels and the core loop computes them itself.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::lm_thread::LmOutput;
use crate::encode::{KernelEncoder, WordKernel};
use crate::metrics::{Stage, StageSet};
use crate::serve::Hub;

/// Encoded outputs queued for the core loop: ~25 s of speech at 2.5 words/s. A word's kernels
/// are ~1.6 MB at 256 electrodes × 31 layers, so a full queue holds ~100 MB.
pub(super) const ENCODED_QUEUE: usize = 64;

/// An LM output on its way to the core loop, with a word's kernels when encoders were bound.
pub(super) struct Encoded {
    /// The model (session order) whose LM thread sent it.
    pub model: usize,
    pub output: LmOutput,
    /// `Some` only for a word, computed by the encoders bound when it passed.
    pub kernel: Option<WordKernel>,
}

/// The encoders bound to the current neural stream, set by the core loop and read by the
/// encode thread for each word.
#[derive(Clone, Default)]
pub(super) struct Binding(Arc<Mutex<Option<Arc<KernelEncoder>>>>);

impl Binding {
    /// Binds `kernels` (or nothing, while no stream fits).
    pub fn set(&self, kernels: Option<Arc<KernelEncoder>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = kernels;
    }

    fn get(&self) -> Option<Arc<KernelEncoder>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Handle on the encode thread.
pub(super) struct EncodeThread {
    thread: JoinHandle<()>,
    /// Outputs dropped because the core loop's queue was full.
    pub dropped: Arc<AtomicU64>,
    /// Where the core loop binds the encoders.
    pub binding: Binding,
}

impl EncodeThread {
    /// Waits for the thread (it ends on shutdown or once the LM thread is gone).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the encode thread panicked");
        }
    }
}

/// Starts the encode thread of model `model` between its LM thread (`input`) and the core
/// loop (`out`); each word's kernel time is recorded as [`Stage::Encode`] in the hub's
/// metrics.
pub(super) fn spawn(
    model: usize,
    input: Receiver<LmOutput>,
    out: Sender<Encoded>,
    hub: Hub,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<EncodeThread> {
    let dropped = Arc::new(AtomicU64::new(0));
    let binding = Binding::default();
    let thread = std::thread::Builder::new().name("encode".into()).spawn({
        let (dropped, binding) = (dropped.clone(), binding.clone());
        move || {
            while !shutdown.load(Ordering::Relaxed) {
                match input.recv_timeout(Duration::from_millis(50)) {
                    Ok(output) => {
                        let encoded = encode(model, output, &binding, &hub.metrics().stages);
                        if out.try_send(encoded).is_err() {
                            dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    })?;
    Ok(EncodeThread {
        thread,
        dropped,
        binding,
    })
}

/// A word's kernels with the encoders bound now; anything else passes unchanged.
fn encode(model: usize, output: LmOutput, binding: &Binding, stages: &StageSet) -> Encoded {
    let kernel = match (&output, binding.get()) {
        (LmOutput::Word { embedding, .. }, Some(kernels)) => {
            let started = Instant::now();
            let kernel = kernels.kernel(embedding);
            stages.record(Stage::Encode, started.elapsed());
            Some(kernel)
        }
        _ => None,
    };
    Encoded {
        model,
        output,
        kernel,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::align::{AlignConfig, Live};
    use crate::encode::{ChannelMap, Encoder, LagGrid};
    use crate::serve::ServerConfig;
    use crate::transcript::Word;

    /// 3 electrodes × 2 layers, lags 0–0.3 s at 10 Hz, 2 components of a 3-wide embedding.
    fn encoder() -> Encoder {
        let grid = LagGrid {
            tmin: 0.0,
            tmax: 0.3,
            rate: 10.0,
        };
        let mut enc = Encoder::zeros(2, 3, grid.n_lags(), 2, 3);
        for (i, w) in enc.weights.iter_mut().enumerate() {
            *w = ((i * 29 % 17) as f32 - 8.0) / 5.0;
        }
        for (i, c) in enc.pca_components.iter_mut().enumerate() {
            *c = ((i * 7 % 5) as f32 - 2.0) / 3.0;
        }
        enc.feature_std.iter_mut().for_each(|s| *s = 1.0);
        enc.meta.grid = grid;
        enc.meta.layers = vec![0, 1];
        enc
    }

    fn live() -> Live {
        let map = ChannelMap {
            stream_index: (0..3).collect(),
        };
        Live::new(encoder(), map, 0.0, AlignConfig::default())
    }

    fn word(id: u64, start: f64, seed: usize) -> LmOutput {
        LmOutput::Word {
            word: Word {
                id,
                text: format!("w{id}"),
                start,
                end: start + 0.2,
                is_final: true,
                confidence: None,
            },
            embedding: (0..6)
                .map(|i| ((seed * 5 + i * 3) % 7) as f32 - 3.0)
                .collect(),
            revised: false,
            latency_ms: BTreeMap::new(),
        }
    }

    /// A word, a watermark, a second word, the first one's retraction and the second one's
    /// revision straight behind it, then the last watermark.
    fn outputs() -> Vec<LmOutput> {
        let watermark = |time| LmOutput::Watermark {
            time,
            received: 0.0,
        };
        vec![
            word(1, 0.2, 1),
            watermark(0.5),
            word(2, 0.6, 2),
            LmOutput::Retract(1),
            word(2, 0.7, 3),
            LmOutput::Segment { id: 1, time: 0.8 },
            watermark(f64::INFINITY),
        ]
    }

    /// What an output is, for comparing orders.
    fn tag(output: &LmOutput) -> String {
        match output {
            LmOutput::Word { word, .. } => format!("word {} at {}", word.id, word.start),
            LmOutput::Retract(id) => format!("retract {id}"),
            LmOutput::Watermark { time, .. } => format!("watermark {time}"),
            LmOutput::Segment { id, time } => format!("segment {id} at {time}"),
        }
    }

    fn start(
        capacity: usize,
    ) -> (
        Sender<LmOutput>,
        Receiver<Encoded>,
        EncodeThread,
        Arc<AtomicBool>,
    ) {
        let (tx, input) = crossbeam_channel::bounded(16);
        let (out, rx) = crossbeam_channel::bounded(capacity);
        let hub = Hub::new(ServerConfig::default().hub_config());
        let shutdown = Arc::new(AtomicBool::new(false));
        let thread = spawn(0, input, out, hub, shutdown.clone()).unwrap();
        (tx, rx, thread, shutdown)
    }

    /// Applies `output` to `live` with `kernel`, or a kernel computed inline.
    fn apply(live: &mut Live, output: &LmOutput, kernel: Option<WordKernel>) {
        match output {
            LmOutput::Word {
                word, embedding, ..
            } => {
                let kernel = kernel.unwrap_or_else(|| live.kernels().kernel(embedding));
                live.word(word.id, word.start, kernel);
            }
            LmOutput::Retract(id) => live.retract(*id),
            LmOutput::Watermark { time, .. } => live.transcript_watermark(*time),
            LmOutput::Segment { time, .. } => live.segment(*time),
        }
    }

    /// Every sample's prediction of `live` after 15 samples.
    fn predictions(live: &mut Live) -> Vec<Vec<f64>> {
        (0..15)
            .map(|i| {
                live.push_neural(&[i as f32, 1.0, -(i as f32)]);
                live.advance_one().expect("final once it arrived");
                live.last_prediction().to_vec()
            })
            .collect()
    }

    #[test]
    fn forwards_in_order_with_kernels_equal_to_inline_ones() {
        let (tx, rx, thread, shutdown) = start(16);
        let mut off_thread = live();
        thread.binding.set(Some(off_thread.kernels().clone()));
        for output in outputs() {
            tx.send(output).unwrap();
        }
        let mut order = Vec::new();
        for _ in 0..outputs().len() {
            let Encoded { output, kernel, .. } = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            order.push(tag(&output));
            assert_eq!(kernel.is_some(), matches!(output, LmOutput::Word { .. }));
            assert!(kernel
                .as_ref()
                .is_none_or(|k| k.encoded_by(off_thread.kernels())));
            apply(&mut off_thread, &output, kernel);
        }
        assert_eq!(order, outputs().iter().map(tag).collect::<Vec<_>>());
        let mut inline = live();
        for output in outputs() {
            apply(&mut inline, &output, None);
        }
        // the same kernels in the same order: the same timeline, to the bit
        assert_eq!(predictions(&mut off_thread), predictions(&mut inline));
        assert_eq!(thread.dropped.load(Ordering::Relaxed), 0);
        shutdown.store(true, Ordering::Relaxed);
        thread.join();
    }

    #[test]
    fn words_pass_without_kernels_while_no_encoders_are_bound() {
        let (tx, rx, thread, shutdown) = start(16);
        tx.send(word(1, 0.2, 1)).unwrap();
        let encoded = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(encoded.kernel.is_none());
        // a binding replaced under a word: its kernel no longer fits the new encoders
        let old = live();
        thread.binding.set(Some(old.kernels().clone()));
        tx.send(word(2, 0.4, 2)).unwrap();
        let encoded = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(!encoded.kernel.unwrap().encoded_by(live().kernels()));
        shutdown.store(true, Ordering::Relaxed);
        thread.join();
    }

    #[test]
    fn a_full_core_queue_drops_and_counts_and_shutdown_stops_the_thread() {
        let (tx, rx, thread, shutdown) = start(1);
        for output in outputs().into_iter().take(3) {
            tx.send(output).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while thread.dropped.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(thread.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(tag(&rx.try_recv().unwrap().output), tag(&outputs()[0]));
        shutdown.store(true, Ordering::Relaxed);
        // joins although the LM side of the channel is still open
        thread.join();
        drop(tx);
    }
}
