//! Progress of long steps (a dump, a restore): on a terminal a bar on stderr with what is
//! done, the rate and the time left; with `--log-format json` a log line every few
//! seconds instead (log shippers have no terminal); nothing with `-q` or when stderr is
//! not a terminal. The work itself only bumps a counter ([`Progress::counter`]) or names
//! a path whose size is what is done ([`Progress::watch_size`]); a task draws or logs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::LogFormat;

/// How progress is shown in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Log,
    Silent,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Chosen once, with the logs: a bar on a terminal, log lines in JSON, else nothing.
pub fn init(format: LogFormat, quiet: bool) {
    let mode = match (quiet, format) {
        (true, _) => Mode::Silent,
        (false, LogFormat::Json) => Mode::Log,
        (false, LogFormat::Text) if std::io::stderr().is_terminal() => Mode::Bar,
        (false, LogFormat::Text) => Mode::Silent,
    };
    let _ = MODE.set(mode);
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Bytes,
    Items,
}

/// One long step's progress; [`Progress::finish`] it (dropping it stops it too).
pub(crate) struct Progress {
    done: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

/// The log line's period.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// How often a watched path is measured and the bar redrawn.
const TICK: Duration = Duration::from_millis(200);

impl Progress {
    /// Start showing `what` against `total` (0: unknown).
    pub(crate) fn start(what: &str, total: u64, unit: Unit) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let mode = MODE.get().copied().unwrap_or(Mode::Silent);
        let bar = (mode == Mode::Bar).then(|| new_bar(what, total, unit));
        let task = match mode {
            Mode::Silent => None,
            Mode::Bar => Some(tokio::spawn(draw(
                bar.clone().expect("a bar"),
                done.clone(),
            ))),
            Mode::Log => Some(tokio::spawn(log(
                what.to_string(),
                total,
                unit,
                done.clone(),
            ))),
        };
        Progress {
            done,
            task,
            watcher: None,
            bar,
        }
    }

    /// The counter the work bumps.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// What is done is the size of `path` (a file, or a directory's files), measured
    /// every tick.
    pub(crate) fn watch_size(&mut self, path: PathBuf) {
        if self.task.is_none() {
            return;
        }
        let done = self.done.clone();
        self.watcher = Some(tokio::spawn(async move {
            loop {
                done.store(size_of(&path), Ordering::Relaxed);
                tokio::time::sleep(TICK).await;
            }
        }));
    }

    /// Stop and clear the bar.
    pub(crate) fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for task in [self.task.take(), self.watcher.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every bar of the process, one per line: steps that run at once (a backup and a
/// dump) each keep their own line.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

fn new_bar(what: &str, total: u64, unit: Unit) -> ProgressBar {
    let bar = bars().add(ProgressBar::new(total));
    let template = match unit {
        Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        Unit::Items => "{msg} [{bar:30}] {pos}/{len} items {per_sec} eta {eta}",
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

async fn draw(bar: ProgressBar, done: Arc<AtomicU64>) {
    loop {
        bar.set_position(done.load(Ordering::Relaxed));
        tokio::time::sleep(TICK).await;
    }
}

/// A progress line every [`LOG_EVERY`]: done, total, rate and time left.
async fn log(what: String, total: u64, unit: Unit, done: Arc<AtomicU64>) {
    // tokio's clock, which tests can pause and advance.
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(LOG_EVERY).await;
        let now = done.load(Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let rate = now as f64 / seconds.max(0.001);
        let left = (rate > 0.0 && total > now).then(|| (total - now) as f64 / rate);
        tracing::info!(
            progress = what.as_str(),
            unit = match unit {
                Unit::Bytes => "bytes",
                Unit::Items => "items",
            },
            done = now,
            total,
            rate_per_second = rate.round(),
            seconds_left = left.map(f64::round),
            "{what}: {now} of {total}"
        );
    }
}

/// The bytes of `path`: a file's length, or the sum of a directory's files.
fn size_of(path: &std::path::Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.metadata().ok())
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0),
        Ok(metadata) => metadata.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What the subscriber writes, shared with the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn json_logs_a_line_every_five_seconds_with_rate_and_time_left() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer({
                let captured = captured.clone();
                move || captured.clone()
            })
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let done = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(log(
            "dump of production".to_string(),
            1000,
            Unit::Bytes,
            done.clone(),
        ));
        done.store(250, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(captured.lines().is_empty(), "nothing before 5 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        done.store(600, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(5)).await;
        task.abort();

        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = &lines[0]["fields"];
        assert_eq!(first["message"], "dump of production: 250 of 1000");
        assert_eq!(first["progress"], "dump of production");
        assert_eq!(first["unit"], "bytes");
        assert_eq!(first["done"], 250);
        assert_eq!(first["total"], 1000);
        assert_eq!(first["rate_per_second"], 50.0);
        assert_eq!(first["seconds_left"], 15.0);
        let second = &lines[1]["fields"];
        assert_eq!(second["done"], 600);
        assert_eq!(second["rate_per_second"], 60.0);
        assert_eq!(second["seconds_left"], 7.0);
    }
}
