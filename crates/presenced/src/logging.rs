//! The log's writer: formatted lines are gathered in memory and a thread
//! writes them to stderr in batches.
//!
//! Every request writes an access-log line. Written straight to stderr that
//! is one `write` system call per request on the request's own thread (and
//! the stderr lock); handed to a thread one by one, it is a wake-up per line.
//! Here a request appends its line to a shared buffer under a short lock.
//! The first line into an empty buffer wakes the writing thread, which waits
//! [`BATCH_WINDOW`] for more and writes them all at once: a busy server makes
//! a few system calls per batch window, an idle one shows a line within it.
//!
//! Nothing is dropped and the order is kept: beyond [`MAX_BUFFERED`] bytes
//! the logging request writes the buffer itself. [`LogGuard`] writes every
//! line still buffered when dropped; `serve` keeps it until the process is
//! done. This module knows nothing of what is logged.
//!
//! A hot path can also write its line itself with [`direct_line`], in the
//! same format as `tracing_subscriber`'s default formatter without colours,
//! into a per-thread buffer: the access-log line of every request skips
//! `tracing`'s field and formatting machinery that way.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writing thread gathers lines before writing them.
pub const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Bytes buffered at most; a line beyond it writes the buffer at once.
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// What the loggers and the writing thread share.
struct Shared {
    /// Lines not yet written, and whether the writer should stop.
    pending: Mutex<Pending>,
    /// Signalled when the buffer stops being empty, and on stop.
    wake: Condvar,
    /// The output; its lock is taken before `pending`'s by whoever writes, so
    /// batches reach it in the order they were buffered.
    out: Mutex<Box<dyn Write + Send>>,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    stop: bool,
}

/// A [`MakeWriter`] whose writers append to the shared buffer.
#[derive(Clone)]
pub struct BackgroundWriter {
    shared: Arc<Shared>,
}

/// Writes every buffered line and stops the writing thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundWriter {
    /// Starts the thread that writes to `out`.
    pub fn spawn(out: impl Write + Send + 'static) -> io::Result<(BackgroundWriter, LogGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            out: Mutex::new(Box::new(out)),
        });
        let thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("presenced-log".to_owned())
                .spawn(move || write_batches(&shared))?
        };
        Ok((
            BackgroundWriter {
                shared: shared.clone(),
            },
            LogGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole: poisoning is ignored.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write_batches(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        {
            let mut pending = lock(&shared.pending);
            while pending.lines.is_empty() && !pending.stop {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if pending.stop && pending.lines.is_empty() {
                return;
            }
        }
        thread::sleep(BATCH_WINDOW);
        let mut out = lock(&shared.out);
        std::mem::swap(&mut batch, &mut lock(&shared.pending).lines);
        // A log that cannot be written has nowhere to say so.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One event's writer: the formatter writes the whole line, then drops it.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    line: Vec<u8>,
}

/// Appends `line` to the buffer (or writes everything when the writer is
/// behind), waking the writing thread when the buffer was empty.
fn push(shared: &Shared, line: &[u8]) {
    if line.is_empty() {
        return;
    }
    let mut pending = lock(&shared.pending);
    let was_empty = pending.lines.is_empty();
    pending.lines.extend_from_slice(line);
    if pending.lines.len() > MAX_BUFFERED {
        // The writer is behind: write everything now, in order.
        drop(pending);
        let mut out = lock(&shared.out);
        let batch = std::mem::take(&mut lock(&shared.pending).lines);
        let _ = out.write_all(&batch).and_then(|()| out.flush());
    } else if was_empty {
        drop(pending);
        shared.wake.notify_one();
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        push(self.shared, &self.line);
    }
}

impl<'a> MakeWriter<'a> for BackgroundWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            line: Vec::new(),
        }
    }
}

/// The writer [`direct_line`] writes to; set by [`BackgroundWriter::install_direct`].
static DIRECT: OnceLock<BackgroundWriter> = OnceLock::new();

impl BackgroundWriter {
    /// Lets [`direct_line`] write to this writer (the first one installed
    /// stays). Only for a writer whose `tracing` formatter writes no colours:
    /// direct lines have none.
    pub fn install_direct(&self) {
        let _ = DIRECT.set(self.clone());
    }
}

/// Per thread: the line being formatted, and the last second whose
/// `YYYY-MM-DDTHH:MM:SS` text was made.
struct LineBuffer {
    line: Vec<u8>,
    second: i64,
    second_text: [u8; 19],
}

thread_local! {
    static LINE: RefCell<LineBuffer> = const {
        RefCell::new(LineBuffer { line: Vec::new(), second: i64::MIN, second_text: [0; 19] })
    };
}

/// Writes one line as `tracing_subscriber`'s default formatter writes an
/// event without colours — `2026-12-04T07:39:53.403108Z  INFO target:
/// message` and then the fields that `fields` appends (each as
/// ` name=value`) — to the writer installed with
/// [`BackgroundWriter::install_direct`]. Returns `false`, writing nothing,
/// when none is installed: the caller logs through `tracing` then. Whether
/// the level is enabled is the caller's to check (`tracing::enabled!`).
pub fn direct_line(
    level: tracing::Level,
    target: &str,
    message: &str,
    fields: impl FnOnce(&mut Vec<u8>),
) -> bool {
    let Some(writer) = DIRECT.get() else {
        return false;
    };
    LINE.with_borrow_mut(|buffer| {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let second = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
        if second != buffer.second {
            let text = jiff::Timestamp::from_second(second)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .strftime("%Y-%m-%dT%H:%M:%S")
                .to_string();
            if let Ok(text) = <[u8; 19]>::try_from(text.as_bytes()) {
                buffer.second_text = text;
                buffer.second = second;
            }
        }
        let line = &mut buffer.line;
        line.clear();
        line.extend_from_slice(&buffer.second_text);
        line.push(b'.');
        let micros = since_epoch.subsec_micros();
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        line.extend_from_slice(&digits);
        // The level padded to five characters, as the formatter writes it.
        line.extend_from_slice(match level {
            tracing::Level::TRACE => b"Z TRACE ",
            tracing::Level::DEBUG => b"Z DEBUG ",
            tracing::Level::INFO => b"Z  INFO ",
            tracing::Level::WARN => b"Z  WARN ",
            tracing::Level::ERROR => b"Z ERROR ",
        });
        line.extend_from_slice(target.as_bytes());
        line.extend_from_slice(b": ");
        line.extend_from_slice(message.as_bytes());
        fields(line);
        line.push(b'\n');
        push(&writer.shared, line);
        // A rare long line does not keep its memory on every thread.
        if line.capacity() > 4096 {
            *line = Vec::new();
        }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` whose bytes a test can read afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    fn log(writer: &BackgroundWriter, text: &str) {
        let mut line = writer.make_writer();
        line.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn every_line_is_written_in_order_once_the_guard_is_dropped() {
        let out = Captured::default();
        let (writer, guard) = BackgroundWriter::spawn(out.clone()).unwrap();
        // Enough to pass the buffer limit a few times.
        let long = "x".repeat(1000);
        let lines: Vec<String> = (0..20_000).map(|n| format!("{n} {long}\n")).collect();
        for line in &lines {
            log(&writer, line);
        }
        drop(guard);
        assert_eq!(out.text(), lines.concat());
    }

    #[test]
    fn a_line_is_written_soon_without_the_guard_being_dropped() {
        let out = Captured::default();
        let (writer, _guard) = BackgroundWriter::spawn(out.clone()).unwrap();
        log(&writer, "hello\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "hello\n");
    }
}
