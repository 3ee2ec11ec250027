//! Transfer progress: an indicatif bar on a terminal, plain periodic lines otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::human_bytes;
use super::style::Style;

/// Off a terminal (always under Skaffold), a line every few seconds is enough.
const PLAIN_EVERY: Duration = Duration::from_secs(3);

pub struct Progress {
    pub bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(style: Style, label: String, total: Option<u64>) -> Progress {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = (!style.quiet).then(|| {
            let (bytes, done) = (bytes.clone(), done.clone());
            std::thread::spawn(move || tick(style, label, total, bytes, done))
        });
        Progress { bytes, done, ticker }
    }

    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tick(style: Style, label: String, total: Option<u64>, bytes: Arc<AtomicU64>, done: Arc<AtomicBool>) {
    let started = Instant::now();
    if style.bars {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t).with_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                    .expect("valid template"),
            ),
        };
        bar.set_message(label);
        while !done.load(Ordering::SeqCst) {
            bar.set_position(bytes.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
        return;
    }
    let mut last = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= PLAIN_EVERY {
            last = Instant::now();
            let sent = bytes.load(Ordering::Relaxed);
            let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprintln!("{label}: {} sent ({}/s)", human_bytes(sent), human_bytes(rate as u64));
        }
    }
}
