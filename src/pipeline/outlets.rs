//! The results as LSL outlets (`docs/lsl.md`, "Results outlets"): the streams of
//! [`super::results`], published on their own thread so that LabRecorder, mne-lsl or a
//! stimulus program can record or react to them. The core loop hands samples over a bounded
//! queue without waiting (a full queue drops and counts, `drops.results_outlet_items`); the
//! outlets are created on the thread (liblsl outlets stay on one thread), each with the
//! source id `<name>-<server pid>`.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use lsl::ExPushable;

use super::recorder::Record;
use crate::xdf::{Samples, StreamInfo};

/// Results queued for the outlets; beyond it they are dropped and counted.
pub const OUTLET_QUEUE: usize = 1024;
/// Seconds of samples each outlet buffers for a slow consumer (liblsl's `max_buffered`).
const BUFFER_SECONDS: i32 = 60;

/// A cloneable handle that queues results for the outlets without ever waiting.
#[derive(Clone)]
pub(super) struct OutletTx {
    tx: Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl OutletTx {
    /// Queues `record`, or drops and counts it when the outlets are behind.
    pub fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Items dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Handle on the outlets thread.
pub(super) struct Outlets {
    tx: OutletTx,
    thread: JoinHandle<()>,
}

impl Outlets {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(OUTLET_QUEUE);
        let thread = std::thread::Builder::new()
            .name("results-outlets".into())
            .spawn(move || publish(rx))?;
        Ok(Self {
            tx: OutletTx {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            thread,
        })
    }

    /// A sender for the core loop.
    pub fn sender(&self) -> OutletTx {
        self.tx.clone()
    }

    /// Publishes what is queued and closes the outlets. Every sender must be gone.
    pub fn finish(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the results outlets thread panicked");
        }
    }
}

fn publish(rx: Receiver<Record>) {
    let mut outlets: HashMap<String, (StreamInfo, lsl::StreamOutlet)> = HashMap::new();
    for record in rx {
        match record {
            Record::ResultStream(info) => {
                if outlets
                    .get(&info.name)
                    .is_some_and(|(current, _)| *current == info)
                {
                    continue;
                }
                let mut published = info.clone();
                published.source_id = format!("{}-{}", info.name, std::process::id());
                match crate::replay::make_outlet(&published, BUFFER_SECONDS, None) {
                    Ok(outlet) => {
                        outlets.insert(info.name.clone(), (info, outlet));
                    }
                    Err(err) => tracing::warn!("no results outlet {}: {err}", info.name),
                }
            }
            Record::Result(name, time, samples) => {
                let Some((_, outlet)) = outlets.get(&*name) else {
                    continue;
                };
                let pushed = match samples {
                    Samples::Float32(v) => outlet.push_sample_ex(&v, time, true),
                    Samples::Int32(v) => outlet.push_sample_ex(&v, time, true),
                    Samples::Int8(v) => outlet.push_sample_ex(&v, time, true),
                    Samples::String(v) => outlet.push_sample_ex(&v, time, true),
                    _ => Ok(()),
                };
                if let Err(err) = pushed {
                    tracing::warn!("results outlet {name}: {err}");
                }
            }
            _ => {}
        }
    }
}
