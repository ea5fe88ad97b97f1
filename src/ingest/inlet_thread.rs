//! The thread behind each inlet handle (neural, transcript, audio): it runs the inlet's
//! worker with a stop flag the worker polls, and is asked to stop and joined when the handle
//! shuts down or is dropped. Also the one way the inlets lock their shared status.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::IngestError;

/// A running inlet thread.
pub(crate) struct InletThread {
    role: &'static str,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InletThread {
    /// Starts `worker` on a thread named `name`; it gets the stop flag to poll. `role` names
    /// the inlet in errors and logs.
    pub(crate) fn spawn(
        role: &'static str,
        name: &str,
        worker: impl FnOnce(Arc<AtomicBool>) + Send + 'static,
    ) -> Result<Self, IngestError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || worker(flag))
            .map_err(|e| IngestError::Thread(role, e))?;
        Ok(InletThread {
            role,
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the worker to stop and waits for it (at once when it has already been joined).
    pub(crate) fn join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the {} inlet thread panicked", self.role);
            }
        }
    }
}

impl Drop for InletThread {
    fn drop(&mut self) {
        self.join();
    }
}

/// Locks an inlet's shared status; a panic elsewhere must not take the status down with it.
pub(crate) fn lock_unpoisoned<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
