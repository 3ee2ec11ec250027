//! No silent wait: every wait on a child is judged by the child's progress (bytes it took
//! or gave, lines it printed). A child that makes none for the stall limit while it is
//! waited on is killed, and the wait's error says it stalled. One thread watches them all.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Default for `--stall-timeout`.
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);

static LIMIT_MS: AtomicU64 = AtomicU64::new(DEFAULT_STALL.as_millis() as u64);
static WATCHED: Mutex<Vec<Weak<State>>> = Mutex::new(Vec::new());
const TICK: Duration = Duration::from_millis(100);

/// How long a child may make no progress while waited on.
pub fn set_limit(limit: Duration) {
    LIMIT_MS.store(limit.as_millis().max(1) as u64, Ordering::Relaxed);
}

pub fn limit() -> Duration {
    Duration::from_millis(LIMIT_MS.load(Ordering::Relaxed))
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

struct State {
    limit_ms: u64,
    pids: Mutex<Vec<u32>>,
    last: AtomicU64,
    waits: AtomicU32,
    stalled: AtomicBool,
}

/// The progress of one child. Clones share it.
#[derive(Clone)]
pub struct Watch(Arc<State>);

impl Watch {
    /// Watches the processes `pids` (killed when the child stalls).
    pub fn new(pids: &[u32]) -> Watch {
        Watch::with_limit(pids, limit())
    }

    pub fn with_limit(pids: &[u32], limit: Duration) -> Watch {
        let state = Arc::new(State {
            limit_ms: limit.as_millis() as u64,
            pids: Mutex::new(pids.to_vec()),
            last: AtomicU64::new(now_ms()),
            waits: AtomicU32::new(0),
            stalled: AtomicBool::new(false),
        });
        let mut watched = WATCHED.lock().unwrap();
        watched.retain(|w| w.strong_count() > 0);
        watched.push(Arc::downgrade(&state));
        if watched.len() == 1 {
            start_watchdog();
        }
        Watch(state)
    }

    pub fn limit(&self) -> Duration {
        Duration::from_millis(self.0.limit_ms)
    }

    /// The child moved: took bytes, gave bytes, printed.
    pub fn touch(&self) {
        self.0.last.store(now_ms(), Ordering::Relaxed);
    }

    /// We wait on the child until the guard drops; the clock starts now.
    pub fn waiting(&self) -> Waiting {
        self.touch();
        self.0.waits.fetch_add(1, Ordering::SeqCst);
        Waiting(self.0.clone())
    }

    /// Whether the watchdog stopped the child.
    pub fn stalled(&self) -> bool {
        self.0.stalled.load(Ordering::SeqCst)
    }

    /// Stops the child now, as a stall would (a wait elsewhere judged it stuck).
    pub fn stop(&self) {
        stop(&self.0);
    }
}

/// A wait in progress; see [`Watch::waiting`].
pub struct Waiting(Arc<State>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waits.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stop(state: &State) {
    if state.stalled.swap(true, Ordering::SeqCst) {
        return;
    }
    for &pid in state.pids.lock().unwrap().iter() {
        // SAFETY: kill(2) with a pid we spawned; one that already exited is harmless.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// One thread for the process's lifetime, waking every tick while anything is watched.
fn start_watchdog() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("kindload-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(TICK);
                let now = now_ms();
                let live: Vec<Arc<State>> = WATCHED.lock().unwrap().iter().filter_map(Weak::upgrade).collect();
                for state in live {
                    let idle = now.saturating_sub(state.last.load(Ordering::Relaxed));
                    if state.waits.load(Ordering::SeqCst) > 0 && idle > state.limit_ms {
                        stop(&state);
                    }
                }
            })
            .expect("a watchdog thread starts");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_waited_child_without_progress_is_stopped_and_a_moving_one_is_not() {
        let limit = Duration::from_millis(400);
        let mut idle = Command::new("sleep").arg("30").spawn().unwrap();
        let mut busy = Command::new("sleep").arg("1.5").spawn().unwrap();
        let (idle_watch, busy_watch) = (Watch::with_limit(&[idle.id()], limit), Watch::with_limit(&[busy.id()], limit));
        let started = Instant::now();
        let toucher = {
            let w = busy_watch.clone();
            std::thread::spawn(move || {
                for _ in 0..15 {
                    w.touch();
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        let (_a, _b) = (idle_watch.waiting(), busy_watch.waiting());
        let idle_status = idle.wait().unwrap();
        assert!(idle_watch.stalled() && !idle_status.success(), "{idle_status:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "stopped within the limit and a tick or so");
        assert!(busy.wait().unwrap().success() && !busy_watch.stalled(), "progress keeps it alive past the limit");
        toucher.join().unwrap();
    }

    #[test]
    fn a_child_nobody_waits_on_is_left_alone() {
        let mut child = Command::new("sleep").arg("0.6").spawn().unwrap();
        let watch = Watch::new(&[child.id()]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(child.wait().unwrap().success() && !watch.stalled());
    }
}
