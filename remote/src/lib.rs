//! The remote cache: stage results shared through an S3 bucket (or any
//! S3-compatible server) or a directory every user sees, by way of the
//! `object_store` crate.
//!
//! The remote mirrors the local store's content-addressed layout under its
//! prefix:
//!
//! ```text
//! objects/ab/cdef…         file contents, named by BLAKE3 digest
//! manifests/ab/cdef….json  artifact manifests, named by the digest of their bytes
//! index/ab/cdef….json      stage records, named by stage fingerprint
//! ```
//!
//! **Push** uploads objects, then manifests, then the stage record last, so
//! a record on the remote is only ever visible once everything it names is
//! there; an interrupted push leaves unreferenced objects that the next push
//! finds (by `HEAD`) and does not upload again. Every name is a digest of
//! its content, so two users pushing the same object race harmlessly: both
//! write the same bytes, and each upload becomes visible whole (an S3 `PUT`
//! or completed multipart upload; a rename on a filesystem).
//!
//! **Fetch** (what `pull` and `run` do) reads the record, checks that it
//! hashes to its fingerprint, then downloads each missing manifest and
//! object into a temporary file while hashing it, and moves it into the
//! local store only when its digest and size match. A damaged copy on the
//! remote is reported and never used; the stage is then computed locally.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tailor_engine::fingerprint::StageRecord;
use tailor_engine::remote::{Fetched, Remote, RemoteConfig};
use tailor_engine::store::{Manifest, Store, unique, write_atomic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Objects transferred at the same time.
const PARALLEL: usize = 8;

/// A remote cache reached through `object_store`.
pub struct ObjectRemote {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    rt: tokio::runtime::Runtime,
}

/// What a push did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PushStats {
    /// Stage records published.
    pub records: usize,
    /// Objects uploaded.
    pub uploaded: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Objects the remote already had.
    pub present: usize,
}

fn rt() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| format!("starting the I/O runtime: {e}"))
}

/// Open the remote a pipeline names. `root` is the pipeline's directory
/// (a relative directory remote is relative to it).
pub fn open(cfg: &RemoteConfig, root: &FsPath) -> Result<ObjectRemote, String> {
    // TLS through rustls with the ring provider (set once per process; a second call is a no-op).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = cfg.url().to_string();
    let (endpoint, region) = match cfg {
        RemoteConfig::Full(s) => (s.endpoint.clone(), s.region.clone()),
        RemoteConfig::Url(_) => (None, None),
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("remote `{url}`: no bucket (write s3://BUCKET/PREFIX)"));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        // Fail fast when the remote is unreachable: a cache must never make a run wait long.
        let mut client = ClientOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(600));
        if let Some(e) = endpoint.or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()) {
            client = client.with_allow_http(e.starts_with("http://"));
            b = b.with_endpoint(e);
        }
        if let Some(r) = region.or_else(|| std::env::var("AWS_REGION").ok()).or_else(|| std::env::var("AWS_DEFAULT_REGION").ok()) {
            b = b.with_region(r);
        }
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none()
            && let Some((id, secret, token)) = profile_credentials()
        {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
            if let Some(t) = token {
                b = b.with_token(t);
            }
        }
        let retry = RetryConfig { max_retries: 2, retry_timeout: Duration::from_secs(15), ..Default::default() };
        let s3 = b.with_retry(retry).with_client_options(client).build().map_err(|e| format!("remote `{url}`: {e}"))?;
        return Ok(ObjectRemote { store: Arc::new(s3), prefix: Path::from(prefix), url, rt: rt()? });
    }
    let dir = match url.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if url.contains("://") => {
            return Err(format!("remote `{url}`: unsupported scheme; use s3://BUCKET/PREFIX, file:///DIR or a directory path"));
        }
        None => root.join(&url),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("remote directory {}: {e}", dir.display()))?;
    let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| format!("remote directory {}: {e}", dir.display()))?;
    Ok(ObjectRemote { store: Arc::new(fs), prefix: Path::default(), url, rt: rt()? })
}

/// `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token` of
/// the profile `AWS_PROFILE` (else `default`) in `~/.aws/credentials`
/// (or `AWS_SHARED_CREDENTIALS_FILE`).
fn profile_credentials() -> Option<(String, String, Option<String>)> {
    let file = std::env::var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let want = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let (mut section, mut id, mut secret, mut token) = (String::new(), None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.trim().to_string();
        } else if section == want
            && let Some((k, v)) = line.split_once('=')
        {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((id?, secret?, token))
}

fn sharded(kind: &str, digest: &str, ext: &str) -> String {
    let (a, b) = digest.split_at(digest.len().min(2));
    format!("{kind}/{a}/{b}{ext}")
}

fn is_missing(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl ObjectRemote {
    fn key(&self, kind: &str, digest: &str, ext: &str) -> Path {
        let rel = sharded(kind, digest, ext);
        if self.prefix.as_ref().is_empty() { Path::from(rel) } else { Path::from(format!("{}/{rel}", self.prefix)) }
    }

    async fn get_small(&self, key: &Path) -> Result<Option<Vec<u8>>, String> {
        match self.store.get(key).await {
            Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())).map_err(|e| format!("reading {key}: {e}")),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(format!("reading {key}: {e}")),
        }
    }

    /// Download one object into the local store, verified. `Ok(Err(_))` = damaged on the remote.
    async fn fetch_object(&self, store: &Store, digest: &str, size: u64) -> Result<Result<u64, String>, String> {
        if store.object_path(digest).exists() {
            return Ok(Ok(0));
        }
        let key = self.key("objects", digest, "");
        let got = match self.store.get(&key).await {
            Ok(g) => g,
            Err(e) if is_missing(&e) => return Ok(Err(format!("{key} is missing on the remote"))),
            Err(e) => return Err(format!("reading {key}: {e}")),
        };
        let tmp = store.root().join(tailor_engine::store::dirs::TMP).join(format!("pull-{}", unique()));
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading {key}: {e}"))?;
            hasher.update(&chunk);
            n += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        file.flush().await.map_err(|e| format!("{}: {e}", tmp.display()))?;
        drop(file);
        let actual = hasher.finalize().to_hex().to_string();
        if actual != digest || n != size {
            let _ = std::fs::remove_file(&tmp);
            return Ok(Err(format!("{key} on the remote is damaged: {n} bytes hashing to {}…, not {size} bytes hashing to its name", &actual[..12])));
        }
        store.put_file(&tmp, digest).map_err(|e| format!("storing {digest}: {e}"))?;
        Ok(Ok(n))
    }

    /// Bring one artifact into the local store. `Ok(Err(_))` = damaged on the remote.
    async fn fetch_artifact(&self, store: &Store, digest: &str) -> Result<Result<u64, String>, String> {
        if store.has_artifact(digest) {
            return Ok(Ok(0));
        }
        let key = self.key("manifests", digest, ".json");
        let Some(bytes) = self.get_small(&key).await? else { return Ok(Err(format!("{key} is missing on the remote"))) };
        if tailor_engine::digest::hash_bytes(&bytes) != digest {
            return Ok(Err(format!("{key} on the remote is damaged (its bytes do not hash to its name)")));
        }
        let m: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Err(format!("{key} on the remote is not a manifest: {e}"))),
        };
        let results: Vec<Result<Result<u64, String>, String>> =
            futures::stream::iter(m.files.iter().map(|f| self.fetch_object(store, &f.digest, f.size))).buffer_unordered(PARALLEL).collect().await;
        let mut total = bytes.len() as u64;
        for r in results {
            match r? {
                Ok(n) => total += n,
                Err(damage) => return Ok(Err(damage)),
            }
        }
        write_atomic(&store.manifest_path(digest), &bytes).map_err(|e| format!("storing manifest {digest}: {e}"))?;
        Ok(Ok(total))
    }

    async fn fetch_async(&self, store: &Store, fingerprint: &str) -> Result<Fetched, String> {
        let key = self.key("index", fingerprint, ".json");
        let Some(bytes) = self.get_small(&key).await? else { return Ok(Fetched::Miss) };
        let rec: StageRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => return Ok(Fetched::Damaged(format!("{key} on the remote is not a stage record: {e}"))),
        };
        if rec.fingerprint != fingerprint || rec.inputs.digest() != fingerprint {
            return Ok(Fetched::Damaged(format!("{key} on the remote does not hash to its fingerprint")));
        }
        let mut total = bytes.len() as u64;
        for d in rec.outputs.values() {
            match self.fetch_artifact(store, d).await? {
                Ok(n) => total += n,
                Err(damage) => return Ok(Fetched::Damaged(damage)),
            }
        }
        // The record last: it makes the result visible in the local store.
        write_atomic(&store.record_path(fingerprint), &bytes).map_err(|e| format!("storing record {fingerprint}: {e}"))?;
        Ok(Fetched::Hit { bytes: total })
    }

    /// Upload one local file under `key` unless the remote has it. Returns bytes uploaded.
    async fn upload(&self, key: &Path, file: &FsPath) -> Result<Option<u64>, String> {
        match self.store.head(key).await {
            Ok(_) => return Ok(None),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(format!("checking {key} on the remote: {e}")),
        }
        let mut src = tokio::fs::File::open(file).await.map_err(|e| format!("{}: {e}", file.display()))?;
        let len = src.metadata().await.map_err(|e| format!("{}: {e}", file.display()))?.len();
        if len <= 16 << 20 {
            let mut buf = Vec::with_capacity(len as usize);
            src.read_to_end(&mut buf).await.map_err(|e| format!("{}: {e}", file.display()))?;
            self.store.put(key, PutPayload::from(buf)).await.map_err(|e| format!("uploading {key}: {e}"))?;
        } else {
            // Large files go up in parts; the object appears only when the upload completes.
            let mut w = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
            tokio::io::copy(&mut src, &mut w).await.map_err(|e| format!("uploading {key}: {e}"))?;
            w.shutdown().await.map_err(|e| format!("uploading {key}: {e}"))?;
        }
        fault_after_upload();
        Ok(Some(len))
    }

    async fn push_async(&self, store: &Store, fingerprints: &[String]) -> Result<PushStats, String> {
        let mut stats = PushStats::default();
        for fp in fingerprints {
            let rec_path = store.record_path(fp);
            let rec_bytes = std::fs::read(&rec_path).map_err(|e| format!("stage record {fp} is not in the local store ({e}); run the pipeline first"))?;
            let rec: StageRecord = serde_json::from_slice(&rec_bytes).map_err(|e| format!("stage record {fp}: {e}"))?;
            for d in rec.outputs.values() {
                let m = store.manifest(d).map_err(|e| format!("artifact {d} is not in the local store ({e}); run the pipeline first"))?;
                for f in &m.files {
                    let path = store.object_path(&f.digest);
                    // Never spread damage: the local copy must still be what its name says.
                    let actual = tailor_engine::digest::hash_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    if actual != f.digest {
                        return Err(format!("{} is damaged in the local store; `tailor verify --repair` and run again", path.display()));
                    }
                }
                let keys: Vec<(Path, PathBuf)> = m.files.iter().map(|f| (self.key("objects", &f.digest, ""), store.object_path(&f.digest))).collect();
                let done: Vec<Result<Option<u64>, String>> =
                    futures::stream::iter(keys.iter().map(|(k, p)| self.upload(k, p))).buffer_unordered(PARALLEL).collect().await;
                for r in done {
                    match r? {
                        Some(n) => {
                            stats.uploaded += 1;
                            stats.bytes += n;
                        }
                        None => stats.present += 1,
                    }
                }
                if let Some(n) = self.upload(&self.key("manifests", d, ".json"), &store.manifest_path(d)).await? {
                    stats.bytes += n;
                }
            }
            // The record last: once it is visible, everything it names is there.
            let key = self.key("index", fp, ".json");
            self.store.put(&key, PutPayload::from(rec_bytes.clone())).await.map_err(|e| format!("uploading {key}: {e}"))?;
            stats.bytes += rec_bytes.len() as u64;
            stats.records += 1;
        }
        Ok(stats)
    }

    /// Upload the stage records with these fingerprints and everything they name.
    pub fn push(&self, store: &Store, fingerprints: &[String]) -> Result<PushStats, String> {
        self.rt.block_on(self.push_async(store, fingerprints))
    }
}

/// Test hook: `TAILOR_FAULT_PUSH_EXIT_AFTER=N` ends the process after N
/// uploads, as a push killed halfway would.
fn fault_after_upload() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    if let Some(limit) = std::env::var("TAILOR_FAULT_PUSH_EXIT_AFTER").ok().and_then(|v| v.parse::<usize>().ok())
        && N.fetch_add(1, Ordering::SeqCst) + 1 >= limit
    {
        eprintln!("TAILOR_FAULT_PUSH_EXIT_AFTER: stopping the push after {limit} uploads");
        std::process::exit(9);
    }
}

impl Remote for ObjectRemote {
    fn name(&self) -> String {
        self.url.clone()
    }

    fn fetch(&self, store: &Store, fingerprint: &str) -> Result<Fetched, String> {
        self.rt.block_on(self.fetch_async(store, fingerprint))
    }
}
