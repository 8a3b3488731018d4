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

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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
        if self.line.is_empty() {
            return;
        }
        let mut pending = lock(&self.shared.pending);
        let was_empty = pending.lines.is_empty();
        pending.lines.extend_from_slice(&self.line);
        if pending.lines.len() > MAX_BUFFERED {
            // The writer is behind: write everything now, in order.
            drop(pending);
            let mut out = lock(&self.shared.out);
            let batch = std::mem::take(&mut lock(&self.shared.pending).lines);
            let _ = out.write_all(&batch).and_then(|()| out.flush());
        } else if was_empty {
            drop(pending);
            self.shared.wake.notify_one();
        }
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
