//! Stdout and file sinks: encode each batch, write it, flush (and fsync), acknowledge.
//!
//! They run on a blocking thread of their own, so encoding uses another core than the
//! transform. A failed write is retried with backoff until it succeeds or the pipeline is
//! told to stop; the batch's checkpoint holds meanwhile.

use crate::config::{FileSinkConfig, StdoutSinkConfig};
use crate::encode::{Encoder, Framing, SyslogKind};
use flowgate_core::{health, metric_names as m, BatchStatus, Delivery};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

/// Where a writer sink puts its bytes.
enum Target {
    Stdout,
    File(OpenFile),
}

/// A file sink's file, and what tells that its path now names another file.
struct OpenFile {
    path: PathBuf,
    file: File,
    fsync: bool,
    /// The inode opened: a rotation (rename, then a new file) changes the path's.
    inode: u64,
    /// [`flowgate_core::reopen::generation`] when opened: SIGHUP changes it.
    generation: u64,
}

impl OpenFile {
    /// Opens `path` for appending (created 0640: flow logs are not for every local user),
    /// first cutting a partial last line.
    fn open(sink: &str, path: &Path, fsync: bool) -> std::io::Result<OpenFile> {
        let in_context =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let generation = flowgate_core::reopen::generation();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(in_context)?;
        let cut = cut_partial_line(&file).map_err(in_context)?;
        if cut > 0 {
            warn!(sink = %sink, path = %path.display(), bytes = cut, "cut a partial last line left by a process that was killed while writing (never acknowledged: it is sent again)");
        }
        let inode = file.metadata().map_err(in_context)?.ino();
        Ok(OpenFile {
            path: path.to_owned(),
            file,
            fsync,
            inode,
            generation,
        })
    }

    /// True if the file should be reopened: SIGHUP, or the path is another file (or none)
    /// since it was opened (logrotate without `copytruncate`).
    fn rotated(&self) -> bool {
        self.generation != flowgate_core::reopen::generation()
            || std::fs::metadata(&self.path).map_or(true, |m| m.ino() != self.inode)
    }
}

pub struct WriterSink {
    name: String,
    target: Target,
    encoder: Encoder,
}

impl WriterSink {
    pub fn stdout(name: &str, config: &StdoutSinkConfig) -> Self {
        WriterSink {
            name: name.to_owned(),
            target: Target::Stdout,
            encoder: config.encoding.encoder(Framing::Newline, SyslogKind::None),
        }
    }

    /// Opens the file for appending; it is reopened after a rotation or SIGHUP.
    pub fn file(name: &str, config: &FileSinkConfig) -> std::io::Result<Self> {
        Ok(WriterSink {
            name: name.to_owned(),
            target: Target::File(OpenFile::open(name, &config.path, config.fsync)?),
            encoder: config.encoding.encoder(Framing::Newline, SyslogKind::None),
        })
    }

    /// Delivers batches until the channel closes. `abort` turning true makes a batch
    /// stuck in retries give up (it is then reported failed, not delivered).
    pub fn run(mut self, mut input: mpsc::Receiver<Delivery>, abort: watch::Receiver<bool>) {
        let mut buf = Vec::new();
        let component = format!("sink.{}", self.name);
        health::set_ready(&component, true);
        while let Some(delivery) = input.blocking_recv() {
            buf.clear();
            self.encoder.encode_batch(&delivery.batch, &mut buf);
            let mut backoff = Duration::from_millis(100);
            let mut attempt = 0u32;
            loop {
                match self.write(&buf) {
                    Ok(()) => {
                        let sink = self.name.clone();
                        metrics::counter!(m::SINK_EVENTS_SENT_TOTAL, "sink" => sink.clone())
                            .increment(delivery.batch.events.len() as u64);
                        metrics::counter!(m::SINK_BYTES_SENT_TOTAL, "sink" => sink)
                            .increment(buf.len() as u64);
                        delivery.finalizer.update(BatchStatus::Delivered);
                        if attempt > 0 {
                            health::set_ready(&component, true);
                        }
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        health::set_ready(&component, false);
                        if *abort.borrow() {
                            error!(sink = %self.name, error = %e, "giving up on a batch at shutdown; its checkpoint holds");
                            drop(delivery);
                            break;
                        }
                        // Log the first failure and then every tenth, not every retry.
                        if attempt == 1 || attempt.is_multiple_of(10) {
                            warn!(sink = %self.name, error = %e, attempt, "write failed; retrying");
                        }
                        metrics::counter!(m::SINK_RETRIES_TOTAL, "sink" => self.name.clone())
                            .increment(1);
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        let _ = self.flush();
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.target {
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Target::File(open) => {
                if open.rotated() {
                    info!(sink = %self.name, path = %open.path.display(), "reopening the file (rotated, or SIGHUP)");
                    // The old file is complete: every batch written to it was synced.
                    *open = OpenFile::open(&self.name, &open.path, open.fsync)?;
                }
                let OpenFile { file, fsync, .. } = open;
                let before = file.metadata()?.len();
                let result =
                    file.write_all(bytes)
                        .and_then(|()| if *fsync { sync(file) } else { Ok(()) });
                if result.is_err() {
                    // Cut off a partial write so the retry does not duplicate half a batch.
                    let _ = file.set_len(before);
                }
                result
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.target {
            Target::Stdout => std::io::stdout().flush(),
            Target::File(open) => sync(&open.file),
        }
    }
}

/// fsync, where the file can be synced: a device such as `/dev/null` answers EINVAL,
/// which means there is nothing to wait for, not a failed write.
fn sync(file: &File) -> std::io::Result<()> {
    match file.sync_data() {
        Err(e)
            if matches!(e.raw_os_error(), Some(EINVAL))
                || e.kind() == std::io::ErrorKind::Unsupported =>
        {
            Ok(())
        }
        other => other,
    }
}

/// EINVAL on Linux: "fd is bound to a special file which does not support synchronization".
const EINVAL: i32 = 22;

/// Truncates the file after its last newline: bytes after it are the start of a line a
/// killed process was writing, never acknowledged (a batch is acknowledged only once all
/// its lines are written), and the next line must not be glued to them. Returns the bytes
/// cut.
fn cut_partial_line(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(at) = chunk.iter().rposition(|b| *b == b'\n') {
            end = start + at as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        file.set_len(end)?;
    }
    Ok(len - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_path_or_a_sighup_means_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.cef");
        let open = OpenFile::open("t", &path, false).unwrap();
        assert!(!open.rotated());
        std::fs::rename(&path, dir.path().join("out.cef.1")).unwrap();
        assert!(open.rotated(), "the path is gone");
        let open = OpenFile::open("t", &path, false).unwrap();
        assert!(!open.rotated());
        flowgate_core::reopen::request();
        assert!(open.rotated(), "SIGHUP");
        assert!(!OpenFile::open("t", &path, false).unwrap().rotated());
    }

    #[test]
    fn a_partial_last_line_is_cut_and_new_files_are_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = |path: &std::path::Path| FileSinkConfig {
            path: path.to_owned(),
            encoding: Default::default(),
            fsync: true,
        };
        let cases: [(&[u8], &[u8]); 5] = [
            (b"a\nb\npart", b"a\nb\n"),
            (b"a\nb\n", b"a\nb\n"),
            (b"no newline at all", b""),
            (b"", b""),
            (b"x\n\n", b"x\n\n"),
        ];
        for (i, (before, after)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.cef"));
            std::fs::write(&path, before).unwrap();
            WriterSink::file("t", &config(&path)).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), *after, "case {i}");
        }
        // A long partial line, over several read chunks.
        let path = dir.path().join("long.cef");
        let mut long = b"kept\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 200_000));
        std::fs::write(&path, &long).unwrap();
        WriterSink::file("t", &config(&path)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept\n");

        let fresh = dir.path().join("new.cef");
        WriterSink::file("t", &config(&fresh)).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "created {mode:o}");
    }

    #[test]
    fn devices_that_cannot_sync_are_not_a_failed_write() {
        let f = OpenOptions::new().append(true).open("/dev/null").unwrap();
        let raw = f.sync_data().unwrap_err();
        assert_eq!(raw.raw_os_error(), Some(EINVAL), "{raw:?}");
        sync(&f).unwrap();
    }

    #[test]
    fn a_file_sink_on_dev_null_delivers() {
        use flowgate_core::{Ack, EventBatch, Finalizer, Origin};
        let config = FileSinkConfig {
            path: "/dev/null".into(),
            encoding: Default::default(),
            fsync: true,
        };
        let sink = WriterSink::file("null", &config).unwrap();
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Ack>();
        let (tx, rx) = mpsc::channel(1);
        let (_abort_tx, abort) = watch::channel(false);
        let batch = EventBatch::new(std::sync::Arc::new(Origin {
            source: "t".into(),
            path: "p".into(),
            subscription_tag: None,
        }));
        tx.try_send(Delivery {
            batch: std::sync::Arc::new(batch),
            finalizer: Finalizer::new(1, ack_tx),
        })
        .unwrap();
        drop(tx);
        sink.run(rx, abort);
        assert_eq!(ack_rx.try_recv().unwrap().status, BatchStatus::Delivered);
    }
}
