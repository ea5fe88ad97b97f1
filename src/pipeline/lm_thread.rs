//! The LM thread: follows the transcript with the language model. [`TranscriptUpdate`]s
//! are applied in order (rollbacks truncate the KV cache, appends embed words); a backlog
//! of them is applied as one, so that words it rolls back are never embedded and the rest
//! run in one forward call. Words rolled back and not appended again are retracted; the
//! watermark goes out after the words it covers, so the core loop never scores a sample
//! before its words. A segment boundary passes on in its place among the words. When no
//! update is waiting, the thread builds the context that follows the next compaction
//! ([`Engine::prepare_compaction`]) in batches that trail the newest words, giving way
//! between blocks when an update arrives, so that neither the context limit nor the
//! preparation stalls the words.
//!
//! With two or more models, each has its LM thread, and [`fan_out`] hands every transcript
//! update to each of them: a model that falls behind delays only itself.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::recorder::{Record, RecordTx};
use crate::ingest::TranscriptUpdate;
use crate::lm::{Engine, WordEmbedding};
use crate::transcript::{LmAction, TranscriptEvent, Word};

/// Words run into the next context per idle step: one call costs about what one word
/// does, and a word arriving meanwhile waits for only one call.
const PREPARE_BATCH: usize = 8;

/// The newest words are left out of the next context until older ones follow them: a
/// revision (or a word arriving out of order) rolls the context back a few words, and would
/// roll the prepared one back with it. At the limit, the words left are run in one call.
const PREPARE_TRAIL: usize = 8;

/// Updates waiting for the LM applied at once at most: a backlog's words embedded in one
/// call, with the latency of one call bounded.
const MAX_BURST: usize = 16;

/// What the LM thread hands the core loop.
pub(super) enum LmOutput {
    /// A word (new or revised) and its embedding `[model layers, dim]`.
    Word {
        word: Word,
        embedding: Vec<f32>,
        /// Whether the id was embedded before (a revision or a recomputation).
        revised: bool,
        /// Milliseconds per stage: `arrival` (message time stamp → pulled by the server),
        /// `lm_queue` (waiting for the LM), `tokenize`, `forward`, `embed` (both), `total`
        /// (LM thread receipt → embedding done).
        latency_ms: BTreeMap<String, f64>,
    },
    /// Word `id` is no longer in the transcript.
    Retract(u64),
    /// No word will start before `time` (server clock); `received`: the server clock when
    /// the message that moved it was pulled.
    Watermark { time: f64, received: f64 },
    /// Segment `id` starts at `time` (server clock): alignment statistics restart there.
    Segment { id: u64, time: f64 },
}

/// Memory the LM thread holds, in bytes, updated after each transcript update.
#[derive(Default)]
pub(super) struct LmMemory {
    /// Key/value cache in use by the current context.
    pub kv_cache: AtomicU64,
    /// The key/value cache's bound: `max_context_tokens` tokens, in each of its caches.
    pub kv_cache_bound: AtomicU64,
    /// The thread's own record of the words embedded (ids by position, words by id).
    pub words: AtomicU64,
}

/// How the LM thread met the context limit (see [`crate::lm::Compactions`]).
#[derive(Default)]
pub(super) struct LmCompactions {
    /// The prepared context took over: nothing recomputed.
    pub prepared: AtomicU64,
    /// The kept words were run again: a stall of about half the limit's prefill.
    pub prefilled: AtomicU64,
}

/// Handle on the LM thread.
pub(super) struct LmThread {
    thread: JoinHandle<()>,
    /// Words the model could not embed (e.g. longer than half the context).
    pub failed_words: Arc<AtomicU64>,
    /// Outputs dropped because the core loop's queue was full.
    pub dropped: Arc<AtomicU64>,
    /// Updates waiting for the LM.
    queue: Receiver<TranscriptUpdate>,
    /// Updates taken from the queue and not yet applied (a backlog is taken at once).
    applying: Arc<AtomicU64>,
    /// What it holds.
    pub memory: Arc<LmMemory>,
    /// How it met the context limit.
    pub compactions: Arc<LmCompactions>,
}

impl LmThread {
    /// Transcript updates the LM has not finished: waiting, or taken and being applied.
    pub fn waiting(&self) -> u64 {
        self.queue.len() as u64 + self.applying.load(Ordering::Relaxed)
    }

    /// Waits for the thread (it ends when the transcript inlet stops or on shutdown).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the LM thread panicked");
        }
    }
}

/// Starts the LM thread.
pub(super) fn spawn(
    engine: Engine,
    updates: Receiver<TranscriptUpdate>,
    out: Sender<LmOutput>,
    record: Option<RecordTx>,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<LmThread> {
    let failed_words = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let memory = Arc::new(LmMemory::default());
    let compactions = Arc::new(LmCompactions::default());
    let mut engine = engine;
    engine.enable_prepared_compaction();
    let mut worker = Worker {
        engine,
        ids: Vec::new(),
        ids_base: 0,
        embedded_before_base: 0,
        embedded: BTreeMap::new(),
        out,
        record,
        failed_words: failed_words.clone(),
        dropped: dropped.clone(),
        memory: memory.clone(),
        compactions: compactions.clone(),
    };
    worker.publish_memory();
    let queue = updates.clone();
    let applying = Arc::new(AtomicU64::new(0));
    let taken = applying.clone();
    let thread = std::thread::Builder::new()
        .name("lm".into())
        .spawn(move || {
            // Whether idle time may have compaction work to do.
            let mut preparing = false;
            while !shutdown.load(Ordering::Relaxed) {
                let wait = if preparing {
                    Duration::ZERO
                } else {
                    Duration::from_millis(50)
                };
                match updates.recv_timeout(wait) {
                    Ok(update) => {
                        let received = Instant::now();
                        // a backlog goes in one piece (see `Worker::apply`)
                        let mut burst = vec![update];
                        burst.extend(updates.try_iter().take(MAX_BURST - 1));
                        taken.store(burst.len() as u64, Ordering::Relaxed);
                        worker.apply(burst, received);
                        taken.store(0, Ordering::Relaxed);
                        worker.publish_memory();
                        preparing = true;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        // a word waiting stops the idle work between blocks
                        let waiting = || !updates.is_empty();
                        let r = worker.engine.prepare_compaction(
                            PREPARE_BATCH,
                            PREPARE_TRAIL,
                            &waiting,
                        );
                        preparing = match r {
                            Ok(more) => more,
                            Err(e) => {
                                tracing::warn!(error = %e, "preparing the next context failed; the limit will re-prefill");
                                false
                            }
                        };
                        if preparing {
                            worker.publish_memory();
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok(LmThread {
        thread,
        failed_words,
        dropped,
        queue,
        applying,
        memory,
        compactions,
    })
}

/// The thread that copies each transcript update to every model's LM thread.
pub(super) struct FanOut {
    thread: JoinHandle<()>,
    /// Copies dropped because a model's queue was full.
    pub dropped: Arc<AtomicU64>,
}

impl FanOut {
    /// Waits for the thread (it ends when the transcript inlet stops or on shutdown).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the transcript fan-out thread panicked");
        }
    }
}

/// Starts the fan-out of `updates` to `models` queues of `capacity` updates each, one per
/// model's LM thread; a full queue drops that model's copy and counts it.
pub(super) fn fan_out(
    updates: Receiver<TranscriptUpdate>,
    models: usize,
    capacity: usize,
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<(Vec<Receiver<TranscriptUpdate>>, FanOut)> {
    let (senders, receivers): (Vec<Sender<TranscriptUpdate>>, Vec<_>) = (0..models)
        .map(|_| crossbeam_channel::bounded(capacity.max(1)))
        .unzip();
    let dropped = Arc::new(AtomicU64::new(0));
    let counted = dropped.clone();
    let thread = std::thread::Builder::new()
        .name("transcript-fan-out".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                match updates.recv_timeout(Duration::from_millis(50)) {
                    Ok(update) => {
                        for sender in &senders {
                            if sender.try_send(update.clone()).is_err() {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok((receivers, FanOut { thread, dropped }))
}

/// Words appended but not embedded yet, each with its message's arrival delay (seconds).
#[derive(Default)]
struct Pending {
    words: Vec<(Word, f64)>,
}

impl Pending {
    /// Drops the words from index `keep` on; returns their ids.
    fn truncate(&mut self, keep: usize) -> Vec<u64> {
        let keep = keep.min(self.words.len());
        self.words.drain(keep..).map(|(w, _)| w.id).collect()
    }
}

struct Worker {
    engine: Engine,
    /// Word id at each transcript position from `ids_base` on; `None` where the model could
    /// not embed the word (the engine holds only the others, so positions map to fewer
    /// engine words).
    ids: Vec<Option<u64>>,
    /// Position of `ids[0]`: the transcript forgot the words before it.
    ids_base: usize,
    /// Words the engine embedded before `ids_base` (its positions count them).
    embedded_before_base: usize,
    /// Words sent to the core loop, by id (text and onset), to tell revisions.
    embedded: BTreeMap<u64, Word>,
    out: Sender<LmOutput>,
    record: Option<RecordTx>,
    failed_words: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    memory: Arc<LmMemory>,
    compactions: Arc<LmCompactions>,
}

impl Worker {
    /// Publishes what the thread holds, and how it met the context limit so far.
    fn publish_memory(&self) {
        let c = self.engine.compactions();
        self.compactions
            .prepared
            .store(c.prepared, Ordering::Relaxed);
        self.compactions
            .prefilled
            .store(c.prefilled, Ordering::Relaxed);
        let (used, bound) = self.engine.kv_cache_bytes();
        // a B-tree entry: key, word record and text, and about half a slot of node overhead
        let entry = std::mem::size_of::<u64>() + std::mem::size_of::<Word>() * 3 / 2;
        let words = self.ids.capacity() * std::mem::size_of::<Option<u64>>()
            + self
                .embedded
                .values()
                .map(|w| entry + w.text.capacity())
                .sum::<usize>();
        let m = &self.memory;
        m.kv_cache.store(used as u64, Ordering::Relaxed);
        m.kv_cache_bound.store(bound as u64, Ordering::Relaxed);
        m.words.store(words as u64, Ordering::Relaxed);
    }

    /// Applies a backlog of updates (received by this thread at `received`) as one: words
    /// it appends and then rolls back are never embedded, the others run in one forward call
    /// (split only where a rollback reaches embedded words, a segment starts or old words
    /// are forgotten past them); retractions follow, then each watermark that moved, so that
    /// a watermark still goes out after every word it covers.
    fn apply(&mut self, burst: Vec<TranscriptUpdate>, received: Instant) {
        let mut removed: Vec<u64> = Vec::new();
        let mut pending = Pending::default();
        let mut watermarks: Vec<(f64, f64)> = Vec::new();
        for update in burst {
            let arrival = update.received - update.stamp;
            for action in update.actions {
                match action {
                    LmAction::Rollback { position } => {
                        let embedded = self.ids_base + self.ids.len();
                        if position < embedded {
                            let index = position.saturating_sub(self.ids_base);
                            self.engine.rollback(
                                self.embedded_before_base
                                    + self.ids[..index].iter().flatten().count(),
                            );
                            removed.extend(self.ids.drain(index..).flatten());
                        }
                        removed.extend(pending.truncate(position.saturating_sub(embedded)));
                    }
                    LmAction::Forget { before } => {
                        if before > self.ids_base + self.ids.len() {
                            self.append(std::mem::take(&mut pending), received);
                        }
                        self.forget(before)
                    }
                    LmAction::Append { position, word } => {
                        debug_assert_eq!(
                            position,
                            self.ids_base + self.ids.len() + pending.words.len(),
                            "appends follow the last word"
                        );
                        removed.retain(|&id| id != word.id);
                        pending.words.push((word, arrival));
                    }
                    LmAction::Segment { id, time } => {
                        self.append(std::mem::take(&mut pending), received);
                        self.record(&TranscriptEvent::Segment { id, time });
                        self.send(LmOutput::Segment { id, time });
                    }
                }
            }
            let moved = watermarks
                .last()
                .is_none_or(|&(time, _)| update.watermark > time);
            if update.watermark.is_finite() && moved {
                watermarks.push((update.watermark, update.received));
            }
        }
        self.append(pending, received);
        for id in removed {
            if self.embedded.remove(&id).is_some() {
                self.record(&TranscriptEvent::Retract { id });
                self.send(LmOutput::Retract(id));
            }
        }
        for (time, received) in watermarks {
            self.record(&TranscriptEvent::Watermark { time });
            self.send(LmOutput::Watermark { time, received });
        }
    }

    /// Embeds the words appended after the last embedded one, all in one forward call; when
    /// that fails (a word the model cannot take), one at a time, so that only that word is
    /// lost.
    fn append(&mut self, Pending { words }: Pending, received: Instant) {
        if words.is_empty() {
            return;
        }
        let started = Instant::now();
        let texts: Vec<&str> = words.iter().map(|(w, _)| w.text.as_str()).collect();
        let batch = match words.len() {
            1 => Err(None),
            _ => self.engine.embed_words(&texts, usize::MAX).map_err(Some),
        };
        match batch {
            Ok(embeddings) => {
                for ((word, arrival), embedding) in words.into_iter().zip(embeddings) {
                    self.embedded_word(word, embedding, started, received, arrival);
                }
            }
            Err(e) => {
                if let Some(e) = e {
                    tracing::debug!(
                        "{} words in one call failed ({e}): one at a time",
                        texts.len()
                    );
                }
                for (word, arrival) in words {
                    let started = Instant::now();
                    match self.engine.push_word(&word.text) {
                        Ok(embedding) => {
                            self.embedded_word(word, embedding, started, received, arrival)
                        }
                        Err(e) => {
                            self.ids.push(None);
                            self.failed_words.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(id = word.id, "word not embedded: {e}");
                        }
                    }
                }
            }
        }
    }

    /// Records and sends one word the engine embedded (its embedding began at `started`);
    /// `arrival`: seconds from its message's time stamp to its pull.
    fn embedded_word(
        &mut self,
        word: Word,
        embedding: WordEmbedding,
        started: Instant,
        received: Instant,
        arrival: f64,
    ) {
        self.ids.push(Some(word.id));
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut latency_ms = BTreeMap::from([
            ("lm_queue".to_string(), ms(started - received)),
            ("tokenize".to_string(), ms(embedding.timing.tokenize)),
            ("forward".to_string(), ms(embedding.timing.forward)),
            ("embed".to_string(), ms(started.elapsed())),
            ("total".to_string(), ms(received.elapsed())),
        ]);
        if arrival.is_finite() {
            latency_ms.insert("arrival".to_string(), arrival * 1e3);
        }
        let revised = self.embedded.insert(word.id, word.clone()).is_some();
        self.record(&TranscriptEvent::Word(word.clone()));
        self.send(LmOutput::Word {
            word,
            embedding: embedding.data,
            revised,
            latency_ms,
        });
    }

    /// The transcript forgot the words before position `before`: so does this record (the
    /// engine keeps its context; it counts positions itself).
    fn forget(&mut self, before: usize) {
        if before <= self.ids_base {
            return;
        }
        let n = (before - self.ids_base).min(self.ids.len());
        for id in self.ids.drain(..n).flatten() {
            self.embedded_before_base += 1;
            self.embedded.remove(&id);
        }
        self.ids_base = before;
    }

    fn send(&self, output: LmOutput) {
        if self.out.try_send(output).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record(&self, event: &TranscriptEvent) {
        if let Some(record) = &self.record {
            record.send(Record::Transcript(lsl::local_clock(), event.to_json()));
        }
    }
}
