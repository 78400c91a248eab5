//! Where checkpoints live: an `object_store` location (a local directory by default),
//! one prefix per checkpoint, the manifest written last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use footfall_operators::time::Timestamp;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::files::{self, File};
use super::format::{self, CheckpointData, SectionSize};

/// A checkpoint store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The URL names a kind of store footfall cannot write to.
    #[error(
        "checkpoint url {0:?}: use a directory, file:///dir, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
    )]
    Unsupported(String),
    /// An option in `[checkpoint.options]` means nothing to this kind of store.
    #[error("[checkpoint.options] {key:?} is not an option of {scheme}:// stores")]
    UnknownOption {
        /// The store's scheme.
        scheme: String,
        /// The option.
        key: String,
    },
    /// The store failed.
    #[error("checkpoint store: {0}")]
    Store(#[from] object_store::Error),
    /// The directory could not be created.
    #[error("checkpoint directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A checkpoint could not be encoded.
    #[error("encoding a checkpoint: {0}")]
    Encode(String),
}

/// A file of a checkpoint, as its manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    /// Name within the checkpoint.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// What `manifest.json` says: written after every file it lists.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint's number: larger is newer.
    pub id: u64,
    /// Wall time it was written, RFC 3339.
    pub created_at: String,
    /// The pipeline clock it covers, RFC 3339.
    pub clock: String,
    /// Partition workers.
    pub workers: u32,
    /// Which of the processes sharing the pipeline wrote it (0 of 1: not shared).
    #[serde(default)]
    pub worker_index: u32,
    /// How many processes shared the pipeline.
    #[serde(default = "one")]
    pub worker_count: u32,
    /// Per output topic, the end offset of each partition when the barrier passed: on
    /// recovery everything from there on is read back and not appended again.
    pub outputs: Vec<(String, Vec<u64>)>,
    /// The files.
    pub files: Vec<FileEntry>,
}

fn one() -> u32 {
    1
}

/// A complete checkpoint found in the store.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    /// Its manifest.
    pub manifest: Manifest,
}

/// A checkpoint directory as [`Store::survey`] finds it.
#[derive(Debug)]
pub struct Found {
    /// Its number.
    pub id: u64,
    /// Its manifest, if it is complete; else why it is not.
    pub manifest: Result<Manifest, String>,
}

/// What [`Store::write`] wrote.
#[derive(Debug)]
pub struct Written {
    /// Bytes in all files, manifest included.
    pub bytes: u64,
    /// Rows and bytes per section, over all files (`state/<operator>` among them).
    pub sections: Vec<SectionSize>,
}

/// A checkpoint store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    keep: usize,
    /// The directory, when the store is local: emptied directories are removed by hand.
    local_dir: Option<PathBuf>,
    /// Where it is, for messages.
    pub location: String,
    /// The process of a shared pipeline writing: (index, count).
    share: (u32, u32),
}

fn id_prefix(id: u64) -> String {
    format!("{id:012}")
}

/// A remote store: `scheme://bucket/prefix`, configured from the environment and then
/// `options`.
fn remote(
    url: &str,
    scheme: &str,
    rest: &str,
    options: &BTreeMap<String, String>,
) -> Result<Arc<dyn ObjectStore>, CheckpointError> {
    let unknown = |key: &str| CheckpointError::UnknownOption {
        scheme: scheme.to_owned(),
        key: key.to_owned(),
    };
    // The TLS provider for the HTTP client (ring, as everywhere in footfall). A second
    // install fails harmlessly: one is already in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let root = format!("{scheme}://{bucket}");
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_url(&root);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build()?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(&root);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build()?)
        }
        "az" | "abfs" | "abfss" | "azure" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(&root);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|_| unknown(k))?, v);
            }
            Arc::new(b.build()?)
        }
        _ => return Err(CheckpointError::Unsupported(url.to_owned())),
    };
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        store
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    })
}

impl Store {
    /// Opens the store at `url`, keeping the newest `keep` checkpoints:
    ///
    /// - a directory path or `file:///dir`, created if missing;
    /// - `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`, configured
    ///   from the provider's usual environment variables (`AWS_ACCESS_KEY_ID`,
    ///   `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...) and then `options`
    ///   (`[checkpoint.options]`: `endpoint`, `region`, `allow_http`, ... as `object_store`
    ///   names them). An option the store does not know is an error, not ignored.
    pub fn open(
        url: &str,
        keep: usize,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, CheckpointError> {
        let keep = keep.max(1);
        let (scheme, rest) = match url.split_once("://") {
            None => ("file", url),
            Some(split) => split,
        };
        if scheme == "file" {
            let dir = PathBuf::from(rest);
            std::fs::create_dir_all(&dir).map_err(|source| CheckpointError::Dir {
                path: dir.clone(),
                source,
            })?;
            let fs = LocalFileSystem::new_with_prefix(&dir)?;
            return Ok(Store {
                inner: Arc::new(fs),
                keep,
                location: dir.display().to_string(),
                local_dir: Some(dir),
                share: (0, 1),
            });
        }
        Ok(Store {
            inner: remote(url, scheme, rest, options)?,
            keep,
            local_dir: None,
            location: url.to_owned(),
            share: (0, 1),
        })
    }

    /// Marks the checkpoints written as worker `index` of `count`'s.
    pub fn with_share(mut self, index: u32, count: u32) -> Self {
        self.share = (index, count);
        self
    }

    /// Checks that `url` and `options` name a store footfall can open, without touching
    /// it: for `footfall validate` and config loading.
    pub fn check(url: &str, options: &BTreeMap<String, String>) -> Result<(), CheckpointError> {
        match url.split_once("://") {
            None | Some(("file", _)) => match options.keys().next() {
                Some(key) => Err(CheckpointError::UnknownOption {
                    scheme: "file".into(),
                    key: key.clone(),
                }),
                None => Ok(()),
            },
            Some((scheme, rest)) => remote(url, scheme, rest, options).map(drop),
        }
    }

    /// The default location under a data directory.
    pub fn default_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("checkpoints")
    }

    /// The numbers of every checkpoint directory, complete or not, newest first.
    async fn ids(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut ids: Vec<u64> = self
            .inner
            .list_with_delimiter(None)
            .await?
            .common_prefixes
            .iter()
            .filter_map(|p| p.as_ref().parse().ok())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        Ok(ids)
    }

    /// Every checkpoint with a readable manifest, newest first.
    pub async fn list(&self) -> Result<Vec<CheckpointInfo>, CheckpointError> {
        let ids = self.ids().await?;
        let mut out = Vec::new();
        for id in ids {
            let path = ObjPath::from(format!("{}/manifest.json", id_prefix(id)));
            let Ok(got) = self.inner.get(&path).await else {
                continue;
            };
            let bytes = got.bytes().await?;
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(manifest) => out.push(CheckpointInfo { manifest }),
                Err(e) => warn!(checkpoint = id, error = %e, "unreadable checkpoint manifest"),
            }
        }
        Ok(out)
    }

    /// Every checkpoint directory, newest first, each checked without being loaded: a
    /// readable manifest whose files all exist with the sizes it lists.
    pub async fn survey(&self) -> Result<Vec<Found>, CheckpointError> {
        let ids = self.ids().await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let manifest = self.manifest(id).await;
            out.push(Found { id, manifest });
        }
        Ok(out)
    }

    /// The manifest of checkpoint `id` once its files are checked, or why it cannot be
    /// used.
    pub async fn manifest(&self, id: u64) -> Result<Manifest, String> {
        let path = ObjPath::from(format!("{}/manifest.json", id_prefix(id)));
        let got = match self.inner.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err("incomplete: no manifest.json (interrupted while writing)".into());
            }
            Err(e) => return Err(format!("manifest.json: {e}")),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| format!("manifest.json: {e}"))?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| format!("manifest.json is unreadable: {e}"))?;
        for f in &m.files {
            let path = ObjPath::from(format!("{}/{}", id_prefix(id), f.name));
            match self.inner.head(&path).await {
                Ok(meta) if meta.size == f.bytes => {}
                Ok(meta) => {
                    return Err(format!(
                        "{} is {} bytes, the manifest says {}",
                        f.name, meta.size, f.bytes
                    ));
                }
                Err(e) => return Err(format!("{}: {e}", f.name)),
            }
        }
        Ok(m)
    }

    /// The next checkpoint number.
    pub async fn next_id(&self) -> Result<u64, CheckpointError> {
        let newest = self.ids().await?.first().copied();
        Ok(newest.map_or(1, |n| n + 1))
    }

    /// Reads one file of a checkpoint, checking its size against the manifest.
    pub async fn read_file(&self, m: &Manifest, name: &str) -> Result<Vec<u8>, String> {
        let entry = m
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("{name} is not in the manifest"))?;
        let path = ObjPath::from(format!("{}/{name}", id_prefix(m.id)));
        let got = self
            .inner
            .get(&path)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let bytes = got.bytes().await.map_err(|e| format!("{name}: {e}"))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(format!(
                "{name} is {} bytes, the manifest says {}",
                bytes.len(),
                entry.bytes
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Loads a checkpoint's content.
    pub async fn load(&self, m: &Manifest) -> Result<CheckpointData, String> {
        let seq = self.read_file(m, "sequencer.arrow").await?;
        let mut data = CheckpointData {
            sequencer: format::decode_sequencer(&seq)
                .map_err(|e| format!("sequencer.arrow: {e}"))?,
            workers: Vec::new(),
        };
        for i in 0..m.workers {
            let name = format!("worker-{i}.arrow");
            let bytes = self.read_file(m, &name).await?;
            data.workers
                .push(format::decode_worker(&bytes).map_err(|e| format!("{name}: {e}"))?);
        }
        Ok(data)
    }

    /// The newest checkpoint that loads completely; broken ones are reported and skipped.
    pub async fn load_newest(&self) -> Result<Option<(Manifest, CheckpointData)>, CheckpointError> {
        for info in self.list().await? {
            let started = Instant::now();
            match self.load(&info.manifest).await {
                Ok(data) => {
                    tracing::info!(
                        checkpoint = info.manifest.id,
                        clock = %info.manifest.clock,
                        secs = started.elapsed().as_secs_f64(),
                        "checkpoint loaded"
                    );
                    return Ok(Some((info.manifest, data)));
                }
                Err(e) => warn!(
                    checkpoint = info.manifest.id,
                    location = %self.location,
                    error = %e,
                    "checkpoint unusable, trying the next older one"
                ),
            }
        }
        Ok(None)
    }

    /// Writes a checkpoint: every file, then the manifest; then drops the oldest beyond
    /// `keep`. Returns the bytes written.
    pub async fn write(
        &self,
        id: u64,
        data: CheckpointData,
        outputs: Vec<(String, Vec<u64>)>,
    ) -> Result<Written, CheckpointError> {
        let clock = data.sequencer.clock;
        let workers = data.workers.len() as u32;
        let prefix = id_prefix(id);
        let mut files: Vec<(String, File)> =
            vec![("sequencer.arrow".into(), File::Sequencer(data.sequencer))];
        for (i, w) in data.workers.into_iter().enumerate() {
            files.push((format!("worker-{i}.arrow"), File::Worker(w)));
        }
        // The files are encoded at once, each on its own blocking thread: a worker's
        // state does not wait for another's to be written.
        let streams = files.into_iter().map(|(name, file)| async {
            let path = ObjPath::from(format!("{prefix}/{name}"));
            files::stream(&*self.inner, self.local_dir.as_deref(), &path, file)
                .await
                .map(|done| (name, done))
        });
        let mut sizes: Vec<SectionSize> = Vec::new();
        let mut entries = Vec::new();
        let mut total = 0;
        for (name, (file_sizes, bytes)) in futures_util::future::try_join_all(streams).await? {
            for s in file_sizes {
                SectionSize::add(&mut sizes, &s.section, s.rows, s.bytes);
            }
            total += bytes;
            entries.push(FileEntry { name, bytes });
        }
        let manifest = Manifest {
            id,
            created_at: Timestamp::now().to_string(),
            clock: clock.to_string(),
            workers,
            worker_index: self.share.0,
            worker_count: self.share.1,
            outputs,
            files: entries,
        };
        let json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        total += json.len() as u64;
        let path = ObjPath::from(format!("{prefix}/manifest.json"));
        self.inner.put(&path, PutPayload::from(json)).await?;
        self.prune().await?;
        Ok(Written {
            bytes: total,
            sections: sizes,
        })
    }

    /// Deletes all but the newest `keep` checkpoints (and any older incomplete ones).
    async fn prune(&self) -> Result<(), CheckpointError> {
        let complete = self.list().await?;
        let Some(oldest_kept) = complete.iter().take(self.keep).next_back() else {
            return Ok(());
        };
        let floor = oldest_kept.manifest.id;
        let prefixes = self.inner.list_with_delimiter(None).await?.common_prefixes;
        for p in prefixes {
            if p.as_ref().parse::<u64>().is_ok_and(|id| id < floor) {
                let objects: Vec<_> = self.inner.list(Some(&p)).try_collect().await?;
                for o in objects {
                    self.inner.delete(&o.location).await?;
                }
                // Best effort: the local store leaves the emptied directory behind.
                if let Some(dir) = &self.local_dir {
                    let _ = std::fs::remove_dir(dir.join(p.as_ref()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SequencerState;

    fn data(clock: i64) -> CheckpointData {
        CheckpointData {
            sequencer: SequencerState {
                clock: Timestamp::from_secs(clock),
                ..Default::default()
            },
            workers: vec![Default::default(), Default::default()],
        }
    }

    #[tokio::test]
    async fn keeps_the_newest_and_falls_back_past_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), 3, &BTreeMap::new()).unwrap();
        for i in 1..=5 {
            let id = store.next_id().await.unwrap();
            assert_eq!(id, i);
            store.write(id, data(i as i64), Vec::new()).await.unwrap();
        }
        let ids: Vec<u64> = store
            .list()
            .await
            .unwrap()
            .iter()
            .map(|c| c.manifest.id)
            .collect();
        assert_eq!(ids, vec![5, 4, 3], "only the newest three are kept");

        // 5: a worker file truncated; 6: written but its manifest never was.
        let f = dir.path().join("000000000005/worker-1.arrow");
        let len = std::fs::metadata(&f).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        std::fs::create_dir_all(dir.path().join("000000000006")).unwrap();
        std::fs::write(dir.path().join("000000000006/sequencer.arrow"), b"partial").unwrap();

        let (m, d) = store
            .load_newest()
            .await
            .unwrap()
            .expect("an older one loads");
        assert_eq!(m.id, 4);
        assert_eq!(d.sequencer.clock, Timestamp::from_secs(4));
        assert_eq!(d.workers.len(), 2);
        assert_eq!(
            store.next_id().await.unwrap(),
            7,
            "numbers are never reused"
        );
    }

    #[tokio::test]
    async fn a_file_larger_than_many_parts_round_trips() {
        use footfall_operators::state::EncodedState;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap(), 3, &BTreeMap::new()).unwrap();
        // About 30 MiB of state: more than three upload parts, many record batches.
        let rows: Vec<(_, Vec<u8>)> = (0..30_000u32)
            .map(|i| (format!("m-{i}").into(), vec![(i % 251) as u8; 1024]))
            .collect();
        let mut d = data(1);
        d.workers[1].operators = vec![(
            "abandoned_cart".into(),
            Box::new(EncodedState(rows.clone())),
        )];
        let written = store.write(1, d, Vec::new()).await.unwrap();
        assert!(
            written.bytes > 3 * files::PART_BYTES as u64,
            "{}",
            written.bytes
        );
        let (m, back) = store.load_newest().await.unwrap().unwrap();
        let file = dir.path().join("000000000001/worker-1.arrow");
        let listed = m.files.iter().find(|f| f.name == "worker-1.arrow").unwrap();
        assert_eq!(std::fs::metadata(file).unwrap().len(), listed.bytes);
        let mut got = Vec::new();
        for (_, image) in &back.workers[1].operators {
            image.encode(&mut |k, v| got.push((k.into(), v.to_vec())));
        }
        assert_eq!(got, rows);
    }

    #[test]
    fn unknown_urls_and_options_are_refused_clearly() {
        let none = BTreeMap::new();
        let e = Store::open("ftp://host/footfall", 3, &none).err().unwrap();
        assert!(e.to_string().contains("ftp://host/footfall"), "{e}");
        let bad = BTreeMap::from([("endpiont".to_owned(), "http://x".to_owned())]);
        let e = Store::open("s3://bucket/footfall", 3, &bad).err().unwrap();
        assert!(
            matches!(&e, CheckpointError::UnknownOption { key, .. } if key == "endpiont"),
            "{e}"
        );
    }
}
