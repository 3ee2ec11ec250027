//! Transfer progress per node: indicatif bars (percentage, total, time left) on a
//! terminal, plain periodic lines otherwise. Nodes expecting the same total share a line.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::human_bytes;
use super::style::Style;

/// Off a terminal (always under Skaffold), a line every few seconds is enough.
const PLAIN_EVERY: Duration = Duration::from_secs(3);

pub struct Progress {
    /// Bytes sent, one counter per node, in the order the nodes were given.
    pub counters: Vec<Arc<AtomicU64>>,
    done: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

/// One displayed line: its label, expected total, and the counter it follows.
struct Line {
    label: String,
    total: Option<u64>,
    counter: Arc<AtomicU64>,
}

impl Progress {
    /// `nodes`: each node's name and the bytes it is expected to receive, where known.
    pub fn start(style: Style, label: String, nodes: Vec<(String, Option<u64>)>) -> Progress {
        let counters: Vec<Arc<AtomicU64>> = nodes.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        let done = Arc::new(AtomicBool::new(false));
        let lines = lines(&label, &nodes, &counters);
        let ticker = (!style.quiet).then(|| {
            let done = done.clone();
            std::thread::spawn(move || tick(style, lines, done))
        });
        Progress { counters, done, ticker }
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

/// One line for all nodes when they expect the same total, else one per node.
fn lines(label: &str, nodes: &[(String, Option<u64>)], counters: &[Arc<AtomicU64>]) -> Vec<Line> {
    let same = nodes.windows(2).all(|w| w[0].1 == w[1].1);
    if same || nodes.len() == 1 {
        let total = nodes.first().and_then(|n| n.1);
        return vec![Line { label: label.to_string(), total, counter: counters[0].clone() }];
    }
    nodes
        .iter()
        .zip(counters)
        .map(|((name, total), counter)| Line { label: name.clone(), total: *total, counter: counter.clone() })
        .collect()
}

fn tick(style: Style, lines: Vec<Line>, done: Arc<AtomicBool>) {
    let started = Instant::now();
    if style.bars {
        let multi = indicatif::MultiProgress::new();
        let bars: Vec<indicatif::ProgressBar> = lines
            .iter()
            .map(|line| {
                let bar = match line.total {
                    Some(t) => indicatif::ProgressBar::new(t).with_style(
                        indicatif::ProgressStyle::with_template(
                            "{msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} {eta} left",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    ),
                    None => indicatif::ProgressBar::new_spinner().with_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                            .expect("valid template"),
                    ),
                };
                bar.set_message(line.label.clone());
                multi.add(bar)
            })
            .collect();
        while !done.load(Ordering::SeqCst) {
            for (bar, line) in bars.iter().zip(&lines) {
                let sent = line.counter.load(Ordering::Relaxed);
                if let Some(total) = line.total.filter(|&t| sent > t) {
                    // The estimate was low: grow the bar rather than overflow it.
                    bar.set_length(sent.max(total));
                }
                bar.set_position(sent);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bars.iter().for_each(indicatif::ProgressBar::finish_and_clear);
        return;
    }
    let mut last = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= PLAIN_EVERY {
            last = Instant::now();
            for line in &lines {
                eprintln!("{}", plain_line(line, started.elapsed()));
            }
        }
    }
}

fn plain_line(line: &Line, elapsed: Duration) -> String {
    let sent = line.counter.load(Ordering::Relaxed);
    let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
    match line.total {
        Some(total) if total > 0 => format!(
            "{}: {} of {} ({}%), {}/s",
            line.label,
            human_bytes(sent),
            human_bytes(total),
            (sent.min(total) * 100 / total),
            human_bytes(rate as u64)
        ),
        _ => format!("{}: {} sent ({}/s)", line.label, human_bytes(sent), human_bytes(rate as u64)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_with_different_totals_get_a_line_each() {
        let counters: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let same = lines("x", &[("a".into(), Some(10)), ("b".into(), Some(10))], &counters);
        assert_eq!(same.len(), 1);
        let differ = lines("x", &[("a".into(), Some(10)), ("b".into(), Some(400))], &counters);
        assert_eq!(differ.iter().map(|l| l.label.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        counters[1].store(100, Ordering::Relaxed);
        assert_eq!(plain_line(&differ[1], Duration::from_secs(1)), "b: 100 B of 400 B (25%), 100 B/s");
    }
}
