//! One persistent pool of worker threads for the kernels.
//!
//! A decoding step makes about 240 parallel calls (seven products and one attention per
//! block), each only tens of microseconds long, so waking sleeping threads for every call
//! costs a good share of the step. The pool's workers stay alive for the whole process and,
//! after a call, spin for [`SPIN`] waiting for the next one before they sleep; the calling
//! thread does its share of the tasks too. Tasks are claimed one at a time, so a core
//! that another process holds only slows its own task, not the call.
//!
//! One call runs on the pool at a time: a call made while another is running (a second
//! model on another thread, parallel tests, a kernel inside a task) runs all its tasks on
//! its own thread. Results never depend on which thread ran a task.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The name of the pool's worker threads, before their number (for per-thread CPU accounts).
pub const KERNEL_WORKER_THREAD: &str = "neuralign-kernel-";

/// How long an idle worker spins for the next call before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// Threads that run a call, the caller included: `NEURALIGN_THREADS` if set, else the
/// machine's available parallelism.
pub fn threads() -> usize {
    pool().threads
}

/// Calls `f(i, chunk)` for every `chunk`-long piece of `data` (the last may be shorter),
/// spread over the pool's threads; returns when all are done.
pub fn for_each_chunk<T, F>(data: &mut [T], chunk: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let chunk = chunk.max(1);
    let tasks = data.len().div_ceil(chunk);
    let base = SendPtr(data.as_mut_ptr());
    let len = data.len();
    run(tasks, &|i| {
        let start = i * chunk;
        let end = (start + chunk).min(len);
        // SAFETY: every task index is run exactly once, and tasks own disjoint ranges of
        // `data`, which outlives the call.
        let piece = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
        f(i, piece);
    });
}

/// A raw pointer that tasks on other threads may use (each on its own range).
struct SendPtr<T>(*mut T);
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: only used by `for_each_chunk`, whose tasks write disjoint ranges.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// The body of a call; in the pool with its lifetime erased to `'static`.
type Task<'a> = dyn Fn(usize) + Sync + 'a;

/// A posted call.
struct Job {
    task: *const Task<'static>,
    /// Tasks not finished yet; on the caller's stack, which outlives the call.
    unfinished: *const AtomicUsize,
    /// Set when a task panicked on a worker; the caller panics in turn.
    panicked: *const AtomicBool,
    tasks: usize,
    next: usize,
}

// SAFETY: the pointers are only dereferenced while the posting caller waits for the call.
unsafe impl Send for Job {}

struct State {
    job: Option<Job>,
    sleeping: usize,
}

struct Pool {
    threads: usize,
    state: Mutex<State>,
    wake: Condvar,
    /// Bumped at every post: spinning workers watch it without taking the lock.
    posted: AtomicU64,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::env::var("NEURALIGN_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool: &'static Pool = Box::leak(Box::new(Pool {
            threads,
            state: Mutex::new(State {
                job: None,
                sleeping: 0,
            }),
            wake: Condvar::new(),
            posted: AtomicU64::new(0),
        }));
        for i in 1..threads {
            std::thread::Builder::new()
                .name(format!("{KERNEL_WORKER_THREAD}{i}"))
                .spawn(move || pool.work())
                .expect("the kernel pool's threads start");
        }
        pool
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking task is re-raised in its caller; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next unclaimed task of the posted call, if any.
    fn claim(state: &mut State) -> Option<(usize, &Job)> {
        let job = state.job.as_mut()?;
        (job.next < job.tasks).then(|| {
            job.next += 1;
            (job.next - 1, &*job)
        })
    }

    fn work(&self) {
        loop {
            // Read before looking for work, so that a call posted in between is not missed.
            let seen = self.posted.load(Ordering::Acquire);
            let claimed =
                Self::claim(&mut self.lock()).map(|(i, j)| (i, j.task, j.unfinished, j.panicked));
            if let Some((i, task, unfinished, panicked)) = claimed {
                // SAFETY: the caller waits until `unfinished` reaches 0, so all are alive.
                unsafe {
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (*task)(i)));
                    if ran.is_err() {
                        (*panicked).store(true, Ordering::Relaxed);
                    }
                    (*unfinished).fetch_sub(1, Ordering::Release);
                }
                continue;
            }
            let spin_start = Instant::now();
            while self.posted.load(Ordering::Acquire) == seen && spin_start.elapsed() < SPIN {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
            }
            if self.posted.load(Ordering::Acquire) == seen {
                let mut state = self.lock();
                state.sleeping += 1;
                while self.posted.load(Ordering::Acquire) == seen {
                    state = self.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                state.sleeping -= 1;
            }
        }
    }
}

/// Runs `task(i)` for `i` in `0..tasks` on the pool (or inline when it is busy).
fn run(tasks: usize, task: &Task<'_>) {
    let pool = pool();
    if tasks <= 1 || pool.threads == 1 {
        (0..tasks).for_each(task);
        return;
    }
    let unfinished = AtomicUsize::new(tasks);
    let panicked = AtomicBool::new(false);
    {
        let mut state = pool.lock();
        if state.job.is_some() {
            drop(state);
            (0..tasks).for_each(task);
            return;
        }
        // SAFETY: the erased lifetime is never outlived: this function does not return
        // before every claimed task has finished, and it removes the job before returning.
        let erased: *const Task<'static> =
            unsafe { std::mem::transmute::<&Task<'_>, &'static Task<'static>>(task) };
        state.job = Some(Job {
            task: erased,
            unfinished: &unfinished,
            panicked: &panicked,
            tasks,
            next: 0,
        });
        pool.posted.fetch_add(1, Ordering::Release);
        if state.sleeping > 0 {
            pool.wake.notify_all();
        }
    }
    // A panicking task must still wait for the others and clear the job.
    let mut panic = None;
    loop {
        let Some(i) = Pool::claim(&mut pool.lock()).map(|(i, _)| i) else {
            break;
        };
        if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i))) {
            panic.get_or_insert(p);
        }
        unfinished.fetch_sub(1, Ordering::Release);
    }
    let mut spins = 0u32;
    while unfinished.load(Ordering::Acquire) != 0 {
        spins += 1;
        if spins < 1 << 12 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    pool.lock().job = None;
    if let Some(p) = panic {
        std::panic::resume_unwind(p);
    }
    assert!(
        !panicked.load(Ordering::Relaxed),
        "a kernel task panicked on a pool thread"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element is visited once, from many threads calling at the same time.
    #[test]
    fn every_chunk_runs_once_under_concurrent_calls() {
        std::thread::scope(|s| {
            for seed in 0..4usize {
                s.spawn(move || {
                    for round in 0..200 {
                        let n = 1 + (seed * 31 + round * 17) % 97;
                        let mut data = vec![0usize; n];
                        for_each_chunk(&mut data, 1 + round % 7, |i, c| {
                            c.iter_mut().for_each(|v| *v += i + 1);
                        });
                        for (j, v) in data.iter().enumerate() {
                            assert_eq!(*v, j / (1 + round % 7) + 1);
                        }
                    }
                });
            }
        });
    }
}
