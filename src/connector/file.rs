//! The file sink: appends one NDJSON line per business object and syncs before reporting.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Deliver, Delivery, Outcome, SinkError};

/// Appends each body and a newline to a file.
///
/// The batch is written, then `sync_data` is called once; only then are its deliveries
/// [`Outcome::Sent`]. On any I/O error (a full disk, a missing directory) the whole batch is
/// retried, the lines written by the failed batch are cut off again, and the file is reopened on
/// the next batch. The sink assumes it is the file's only writer.
///
/// A path that is not a regular file (`/dev/null`, a named pipe) is written to as it is: there is
/// nothing to sync or cut back, and a line is sent once the write returns.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Option<File>,
    /// Whether the open file is a regular file, which can be synced and truncated.
    regular: bool,
}

impl FileSink {
    /// Checks the path; the file itself is opened (and created) on the first delivery, so that a
    /// configuration can be checked on another machine.
    pub fn from_config(path: &Path) -> Result<Self, SinkError> {
        if path.as_os_str().is_empty() {
            return Err(SinkError::EmptyPath);
        }
        if path.is_dir() {
            return Err(SinkError::PathIsDirectory(path.to_path_buf()));
        }
        Ok(FileSink {
            path: path.to_path_buf(),
            file: None,
            regular: true,
        })
    }

    fn open(&mut self) -> Result<File, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| self.open_error(e))?;
        self.regular = file
            .metadata()
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?
            .is_file();
        if self.regular {
            terminate_partial_line(&mut file)
                .map_err(|e| format!("cannot append to {}: {e}", self.path.display()))?;
        }
        Ok(file)
    }

    fn open_error(&self, e: io::Error) -> String {
        let missing_dir = self
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty() && !dir.exists());
        match missing_dir {
            Some(dir) if e.kind() == io::ErrorKind::NotFound => format!(
                "cannot open {}: directory {} does not exist",
                self.path.display(),
                dir.display()
            ),
            _ => format!("cannot open {}: {e}", self.path.display()),
        }
    }

    fn append(&self, file: &File, batch: &[Delivery]) -> io::Result<()> {
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        for delivery in batch {
            out.write_all(delivery.body.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        if self.regular {
            file.sync_data()?;
        }
        Ok(())
    }
}

impl Deliver for FileSink {
    fn deliver(&mut self, batch: &[Delivery]) -> Vec<Outcome> {
        let file = match self.file.take() {
            Some(file) => file,
            None => match self.open() {
                Ok(file) => file,
                Err(reason) => {
                    tracing::warn!(path = %self.path.display(), reason = %reason, "file sink unavailable");
                    return vec![Outcome::retry(reason); batch.len()];
                }
            },
        };
        let durable_len = file
            .metadata()
            .map(|m| m.len())
            .ok()
            .filter(|_| self.regular);
        match self.append(&file, batch) {
            Ok(()) => {
                self.file = Some(file);
                vec![Outcome::Sent; batch.len()]
            }
            Err(e) => {
                let reason = format!("writing {} failed: {e}", self.path.display());
                tracing::warn!(path = %self.path.display(), error = %e, "file sink write failed");
                // The batch will be written again: drop what made it of this attempt, so that a
                // line cut short by a full disk does not corrupt the file.
                if let Some(len) = durable_len {
                    if let Err(e) = file.set_len(len) {
                        tracing::warn!(path = %self.path.display(), error = %e, "cannot truncate after failed write");
                    }
                }
                vec![Outcome::retry(reason); batch.len()]
            }
        }
    }
}

/// A crash in the middle of a write can leave a line without its newline; end it, so the next
/// line does not get glued onto it.
fn terminate_partial_line(file: &mut File) -> io::Result<()> {
    if file.metadata()?.len() == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    file.seek(SeekFrom::End(-1))?;
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        tracing::warn!("file ends in a partial line; terminating it");
        file.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: std::ops::RangeInclusive<i64>) -> Vec<Delivery> {
        ids.map(|i| Delivery {
            event_id: i,
            key: i as usize,
            object: "Employee".into(),
            verb: "Create".into(),
            object_event_id: format!("file_{i}"),
            body: format!("{{\"event_id\":{i},\"text\":\"é\"}}"),
        })
        .collect()
    }

    #[test]
    fn appends_lines_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let mut sink = FileSink::from_config(&path).unwrap();
        assert!(!path.exists(), "opened before the first delivery");

        assert_eq!(sink.deliver(&batch(1..=2)), vec![Outcome::Sent; 2]);
        assert_eq!(sink.deliver(&batch(3..=5)), vec![Outcome::Sent; 3]);

        let expected: String = batch(1..=5).iter().map(|d| d.body.clone() + "\n").collect();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
    }

    #[test]
    fn keeps_existing_content_and_ends_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, "{\"old\":1}\n{\"cut\":").unwrap();
        let mut sink = FileSink::from_config(&path).unwrap();
        assert_eq!(sink.deliver(&batch(1..=1)), vec![Outcome::Sent]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{{\"old\":1}}\n{{\"cut\":\n{}\n", batch(1..=1)[0].body)
        );
    }

    #[test]
    fn missing_directory_is_retried_naming_the_path_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet").join("events.ndjson");
        let mut sink = FileSink::from_config(&path).unwrap();

        let outcomes = sink.deliver(&batch(1..=2));
        assert_eq!(outcomes.len(), 2);
        for outcome in &outcomes {
            let Outcome::Retry {
                reason,
                after: None,
            } = outcome
            else {
                panic!("expected a retry, got {outcome:?}");
            };
            assert!(reason.contains(&path.display().to_string()), "{reason}");
            assert!(reason.contains("does not exist"), "{reason}");
        }

        std::fs::create_dir(dir.path().join("not-yet")).unwrap();
        assert_eq!(sink.deliver(&batch(3..=3)), vec![Outcome::Sent]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", batch(3..=3)[0].body)
        );
    }

    #[test]
    fn full_disk_is_retried() {
        // /dev/full fails every write with ENOSPC.
        let mut sink = FileSink::from_config(Path::new("/dev/full")).unwrap();
        let outcomes = sink.deliver(&batch(1..=3));
        assert_eq!(outcomes.len(), 3);
        for outcome in outcomes {
            let Outcome::Retry { reason, .. } = &outcome else {
                panic!("expected a retry, got {outcome:?}");
            };
            assert!(reason.contains("/dev/full"), "{reason}");
        }
        assert!(sink.file.is_none(), "must reopen after an error");
    }

    #[test]
    fn devices_are_written_without_sync() {
        // /dev/null cannot be fsynced (EINVAL): that must not make every batch a retry.
        let mut sink = FileSink::from_config(Path::new("/dev/null")).unwrap();
        assert_eq!(sink.deliver(&batch(1..=3)), vec![Outcome::Sent; 3]);
        assert_eq!(sink.deliver(&batch(4..=4)), vec![Outcome::Sent]);
    }

    #[test]
    fn a_directory_or_empty_path_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FileSink::from_config(dir.path()),
            Err(SinkError::PathIsDirectory(_))
        ));
        assert!(matches!(
            FileSink::from_config(Path::new("")),
            Err(SinkError::EmptyPath)
        ));
    }
}
