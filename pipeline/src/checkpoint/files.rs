//! Writing one checkpoint file: encoded on a blocking thread, straight into its file in
//! a local directory, or in parts to a remote store's multipart upload. Either way no
//! file is ever whole in memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::format::{self, SectionSize};
use super::store::CheckpointError;

/// The size of the parts a checkpoint file is uploaded in (S3 wants at least 5 MiB).
pub(super) const PART_BYTES: usize = 8 << 20;

/// A checkpoint file's content, owned by the thread encoding it.
pub(super) enum File {
    Sequencer(super::SequencerState),
    Worker(footfall_operators::worker::Snapshot),
}

/// Encodes `file` into `out`, counting the bytes: the file's section sizes and length.
fn encode<W: Write>(file: &File, out: W) -> std::io::Result<(W, Vec<SectionSize>, u64)> {
    let out = Counted {
        inner: out,
        bytes: 0,
    };
    let (mut out, sizes) = match file {
        File::Sequencer(s) => format::encode_sequencer(s, out),
        File::Worker(w) => format::encode_worker(w, out),
    }
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    out.flush()?;
    Ok((out.inner, sizes, out.bytes))
}

/// Writes `file` to `path` of `store`, or under `local_dir` when the store is that
/// directory. Encoding runs on a blocking thread (off the runtime's threads, which run
/// the partitions); a failed encode aborts the upload. Returns the file's section
/// sizes and its length.
pub(super) async fn stream(
    store: &dyn ObjectStore,
    local_dir: Option<&Path>,
    path: &ObjPath,
    file: File,
) -> Result<(Vec<SectionSize>, u64), CheckpointError> {
    if let Some(dir) = local_dir {
        let dest = dir.join(path.as_ref());
        return tokio::task::spawn_blocking(move || write_local(&dest, file))
            .await
            .map_err(|e| CheckpointError::Encode(e.to_string()))?;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let encode = tokio::task::spawn_blocking(move || {
        let out = Parts {
            buf: Vec::with_capacity(PART_BYTES),
            tx,
        };
        let encoded = encode(&file, out).and_then(|(mut out, sizes, bytes)| {
            out.send()?;
            Ok((sizes, bytes))
        });
        // The state is freed here, on this thread, not on the runtime's.
        crate::runtime::release(file);
        encoded.map_err(|e| CheckpointError::Encode(e.to_string()))
    });
    // Parts go to the upload as they are encoded, without a copy.
    let upload = async {
        let mut w =
            WriteMultipart::new_with_chunk_size(store.put_multipart(path).await?, PART_BYTES);
        while let Some(part) = rx.recv().await {
            w.wait_for_capacity(2).await?;
            w.put(part.into());
        }
        Ok::<_, object_store::Error>(w)
    };
    let (encoded, uploaded) = tokio::join!(encode, upload);
    let encoded = encoded
        .map_err(|e| CheckpointError::Encode(e.to_string()))
        .and_then(|r| r);
    match (encoded, uploaded) {
        (Ok(done), Ok(w)) => {
            w.finish().await?;
            Ok(done)
        }
        (Err(e), Ok(w)) => {
            let _ = w.abort().await;
            Err(e)
        }
        (_, Err(e)) => Err(e.into()),
    }
}

/// Encodes `file` straight into the local file `dest`, through a 1 MiB buffer. It is
/// written beside `dest` first (a name the store's listing skips) and renamed when
/// complete, as the store's own uploads are.
fn write_local(dest: &Path, file: File) -> Result<(Vec<SectionSize>, u64), CheckpointError> {
    let failed = |e: std::io::Error| CheckpointError::Encode(format!("{}: {e}", dest.display()));
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut staged = dest.as_os_str().to_owned();
    staged.push("#0");
    let staged = PathBuf::from(staged);
    let encoded = std::fs::File::create(&staged).and_then(|f| {
        let (_, sizes, bytes) = encode(&file, std::io::BufWriter::with_capacity(1 << 20, f))?;
        Ok((sizes, bytes))
    });
    // The state is freed here, on this blocking thread, not on the runtime's.
    crate::runtime::release(file);
    match encoded.and_then(|done| std::fs::rename(&staged, dest).map(|()| done)) {
        Ok(done) => Ok(done),
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            Err(failed(e))
        }
    }
}

/// A writer that counts the bytes through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An encoder's output to an upload: full parts go to it as they fill.
struct Parts {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Parts {
    /// Hands what is buffered to the upload.
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_BYTES));
        self.tx
            .blocking_send(part)
            .map_err(|_| std::io::Error::other("the checkpoint upload stopped"))
    }
}

impl Write for Parts {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= PART_BYTES {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
