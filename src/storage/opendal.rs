//! S3-compatible object stores and SFTP servers as [`Storage`] backends, through Apache
//! OpenDAL (issue 10: "do not write an S3 client"). rustic's `rustic_backend/src/opendal.rs`
//! is the model: one OpenDAL operator per repository, a retry layer with exponential
//! backoff and jitter for transient errors, a timeout layer so that a server that
//! stops answering is an error and not a hang.
//!
//! OpenDAL is async; the engine is plain threads (STYLE.md: tokio stays at the edges).
//! Each [`Remote`] owns a small private tokio runtime, and every call spawns its future
//! there and waits on a channel, which works from any thread, also from one that is
//! itself inside a tokio runtime (where `block_on` would panic).
//!
//! Errors are mapped by OpenDAL's [`opendal::ErrorKind`] and its temporary/persistent
//! status, never by message text: `NotFound`, `AlreadyExists` (`ConditionNotMatch` of a
//! conditional write too), `Transient` (temporary, or temporary and still failing after
//! the retries: OpenDAL calls that "persistent"), everything else `Other`.
//!
//! Durability of [`Storage::write`]: an S3 `PUT` (and a multipart upload's completion)
//! makes the whole object visible at once. SFTP writes go to `.tmp-<random>` in the
//! same directory and are renamed over the key (OpenSSH's `posix-rename`, atomic), so a
//! reader never sees half an object; listings skip `.tmp-*` leftovers.
//!
//! [`Storage::create_new`]: S3 sends `If-None-Match: *` (AWS since 2024, MinIO, R2,
//! moto); SFTP opens with `O_CREAT|O_EXCL`. On SFTP the content is then written into the
//! new file, so a crash in between leaves a short lock file, which the lock code treats
//! as unreadable (it fails closed) until removed.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

use super::location::Location;
use super::remote::{Retry, S3Settings};
use super::{Listed, Storage, StorageError};

/// Part size of a multipart upload (and of the pieces a local file is read in): S3's
/// smallest part but the last (also Backblaze B2's and Cloudflare R2's), so that a
/// given memory holds as many parts in flight as it can (docs/BENCHMARKS.md, "Issue 9,
/// seventh pass").
const PART: usize = 5 << 20;

/// Parts in memory at once across all uploads of one [`Remote`], by default: 6 × 5 MiB
/// = 30 MiB, whatever the number of `transfers` (issue 9: peak RSS ≤ 64 MB on every
/// step). S3's `concurrency` sets it, from [`MIN_PARTS`] to [`MAX_PARTS`].
const DEFAULT_PARTS: usize = 6;

/// The smallest budget: an upload of more parts than it holds permits must leave one
/// free beyond those OpenDAL can keep, see [`Remote::upload`].
const MIN_PARTS: usize = 3;

/// The largest budget (5 GiB of parts).
const MAX_PARTS: usize = 1024;

/// A repository on S3 or SFTP. Cheap to share across threads (`Sync`); every call
/// blocks the calling thread until OpenDAL is done, retries included.
pub struct Remote {
    op: Operator,
    rt: Arc<tokio::runtime::Runtime>,
    location: Location,
    sftp: bool,
    /// The parts of [`PART`] bytes that uploads may hold at once, shared by all of them
    /// ([`MIN_PARTS`] to [`MAX_PARTS`] permits).
    parts: Arc<tokio::sync::Semaphore>,
    /// The number of permits of `parts`.
    budget: usize,
    /// How long one step of an upload (a part accepted, the upload completed) may
    /// take before the upload fails as stalled: every try of it timed out, with
    /// the waits between. OpenDAL's timeouts bound each call it makes, but not the
    /// part requests its multipart writer runs in the background, which a frozen
    /// server kept waiting for ever.
    stall: Duration,
    /// The parts held now and at most so far ([`Remote::parts_peak`]).
    held: Arc<Held>,
    /// Open while the server is left alone after it did not answer ([`Retry::pause`]).
    breaker: Arc<Breaker>,
}

/// A circuit breaker for one [`Remote`]: opened by a request that spent its retries
/// on a server that does not answer, it fails every request at once while it is open
/// ([`Retry::pause`]), those under way included (they wait on `opened`); then
/// requests go to the server again.
#[derive(Debug)]
struct Breaker {
    pause: Duration,
    /// When it opened, and the error that opened it.
    open: std::sync::Mutex<Option<(std::time::Instant, String)>>,
    opened: tokio::sync::Notify,
}

impl Breaker {
    fn new(pause: Duration) -> Breaker {
        Breaker {
            pause,
            open: std::sync::Mutex::new(None),
            opened: tokio::sync::Notify::new(),
        }
    }

    /// `Err` ([`Breaker::refusal`]) while it is open.
    fn check(&self, key: &str) -> Result<(), StorageError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match &*open {
            Some((at, _)) if at.elapsed() < self.pause => {
                drop(open);
                Err(self.refusal(key))
            }
            Some(_) => {
                *open = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The transient error of a request not sent, or cut short, because the breaker
    /// is (or was) open; it names the error that opened it.
    fn refusal(&self, key: &str) -> StorageError {
        let why = match &*self.open.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((_, why)) => why.clone(),
            None => "no answer".to_string(),
        };
        StorageError::Transient {
            key: key.to_string(),
            source: format!(
                "not sent: the server did not answer an earlier request ({why}); it is asked again {} s after that",
                self.pause.as_secs()
            )
            .into(),
        }
    }

    /// Opens it when `e` (after the retries) says the server does not answer.
    fn observe(&self, e: &opendal::Error) {
        if matches!(e.kind(), ErrorKind::Unexpected | ErrorKind::RateLimited) {
            *self.open.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((std::time::Instant::now(), e.to_string()));
            self.opened.notify_waiters();
        }
    }

    /// Runs `f` until it ends, or until the breaker opens meanwhile (`None`).
    async fn guard<T>(&self, f: impl std::future::Future<Output = T>) -> Option<T> {
        // Registered before `f` runs: an opening from now on is seen.
        let opened = self.opened.notified();
        tokio::select! {
            r = f => Some(r),
            _ = opened => None,
        }
    }
}

/// A count of the upload parts alive now, and the most at once.
#[derive(Debug, Default)]
struct Held {
    now: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("location", &self.location.to_string())
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn config_error(
    location: &Location,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StorageError {
    StorageError::Other {
        key: location.to_string(),
        source: Box::new(e),
    }
}

impl Remote {
    /// Connects nothing yet: builds the OpenDAL operator for `location` (S3 or SFTP;
    /// a local path is `Other`), with `s3` for what the environment does not say.
    /// Errors: `Other` for a configuration OpenDAL refuses.
    pub fn open(
        location: &Location,
        s3: &S3Settings,
        retry: Retry,
    ) -> Result<Remote, StorageError> {
        opendal::install_default();
        // The reqwest transport of S3: OpenDAL installs it by itself only with a TLS
        // provider feature, which this build leaves out (ring is chosen below).
        opendal_http_transport_reqwest::install_default();
        // reqwest is built without a bundled crypto provider: rustls gets ring here, not
        // aws-lc-rs (a long C build that needs cmake). A second install is refused,
        // harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut budget = DEFAULT_PARTS;
        let op = match location {
            Location::S3 { bucket, prefix } => {
                let mut b = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(
                        &env("AWS_REGION")
                            .or_else(|| env("AWS_DEFAULT_REGION"))
                            .or_else(|| s3.region.clone())
                            .unwrap_or_else(|| "us-east-1".into()),
                    );
                if let Some(e) = env("AWS_ENDPOINT_URL").or_else(|| s3.endpoint.clone()) {
                    b = b.endpoint(&e);
                }
                let key = env("AWS_ACCESS_KEY_ID").zip(env("AWS_SECRET_ACCESS_KEY"));
                let key =
                    key.or_else(|| s3.access_key_id.clone().zip(s3.secret_access_key.clone()));
                if let Some((id, secret)) = key {
                    b = b.access_key_id(&id).secret_access_key(&secret);
                    if let Some(t) = env("AWS_SESSION_TOKEN").or_else(|| s3.session_token.clone()) {
                        b = b.session_token(&t);
                    }
                }
                if s3.path_style == Some(false) {
                    b = b.enable_virtual_host_style();
                }
                budget = s3
                    .concurrency
                    .unwrap_or(DEFAULT_PARTS)
                    .clamp(MIN_PARTS, MAX_PARTS);
                Operator::new(b).map_err(|e| config_error(location, e))?
            }
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                let endpoint = match port {
                    Some(p) => format!("ssh://{host}:{p}"),
                    None => format!("ssh://{host}"),
                };
                let mut b = opendal::services::Sftp::default()
                    .endpoint(&endpoint)
                    .root(path)
                    .known_hosts_strategy("strict");
                if let Some(u) = user {
                    b = b.user(u);
                }
                Operator::new(b).map_err(|e| config_error(location, e))?
            }
            Location::Local(_) => {
                return Err(config_error(
                    location,
                    std::io::Error::other("a local path is not a remote location"),
                ))
            }
        };
        let op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(retry.timeout)
                    .with_io_timeout(retry.io_timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(retry.attempts)
                    .with_min_delay(retry.min_delay)
                    .with_max_delay(retry.max_delay),
            );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cbsnap-remote")
            .enable_all()
            .build()
            .map_err(|e| config_error(location, e))?;
        Ok(Remote {
            op,
            rt: Arc::new(rt),
            location: location.clone(),
            sftp: matches!(location, Location::Sftp { .. }),
            parts: Arc::new(tokio::sync::Semaphore::new(budget)),
            budget,
            held: Arc::default(),
            breaker: Arc::new(Breaker::new(retry.pause)),
            stall: retry.io_timeout * (retry.attempts as u32 + 1)
                + retry.max_delay * retry.attempts as u32,
        })
    }

    /// The most upload parts (of 5 MiB) that were in memory at once since this handle
    /// was opened, counted from each part read until OpenDAL dropped it: at most the
    /// budget (`concurrency`, default 6). For tests and benchmarks.
    pub fn parts_peak(&self) -> usize {
        self.held.peak.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `f` on the private runtime and waits for it; fails at once while the
    /// breaker is open, and as soon as it opens.
    fn run<T, F>(&self, key: &str, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = opendal::Result<T>> + Send + 'static,
    {
        self.breaker.check(key)?;
        let breaker = Arc::clone(&self.breaker);
        match self.wait(key, async move { breaker.guard(f).await })? {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => {
                self.breaker.observe(&e);
                Err(map_error(key, e))
            }
            // Opened by another request meanwhile: its error says why.
            None => Err(self.breaker.refusal(key)),
        }
    }

    /// Runs `f` on the private runtime and waits for its output; an error only if the
    /// task panicked (the runtime drops the sender).
    fn wait<T, F>(&self, key: &str, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|e| StorageError::Other {
            key: key.to_string(),
            source: Box::new(e),
        })
    }

    /// `n` permits of `semaphore`, waited for on the runtime. Never closed: an error
    /// only if the waiting task panicked.
    fn permits(
        &self,
        key: &str,
        semaphore: &Arc<tokio::sync::Semaphore>,
        n: u32,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, StorageError> {
        let s = Arc::clone(semaphore);
        self.wait(key, async move { s.acquire_many_owned(n).await })?
            .map_err(|e| StorageError::Other {
                key: key.to_string(),
                source: Box::new(e),
            })
    }

    /// Where an atomic SFTP write goes first: a unique name in the key's directory.
    fn temp_key(key: &str) -> String {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let (dir, name) = match key.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), key),
        };
        let mut h = blake3::Hasher::new();
        h.update(&std::process::id().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        h.update(&nanos().to_le_bytes());
        h.update(gethostname::gethostname().as_encoded_bytes());
        let unique = &h.finalize().to_hex()[..16];
        format!("{dir}{TEMP_PREFIX}{name}-{unique}")
    }

    /// Moves a finished temporary object over `key` (SFTP only); removes it on failure.
    fn publish(&self, tmp: String, key: &str) -> Result<(), StorageError> {
        let op = self.op.clone();
        let (from, to) = (tmp.clone(), key.to_string());
        let r = self.run(key, async move { op.rename(&from, &to).await });
        if r.is_err() {
            let op = self.op.clone();
            let _ = self.run(key, async move { op.delete(&tmp).await });
        }
        r
    }

    /// Uploads `local` to `key` in parts of [`PART`] bytes, several in flight; the object
    /// appears when the upload completes (S3's multipart completion), or not at all. The
    /// file is read on the calling thread (not inside a tokio runtime: `blocking_send`),
    /// one part at a time, while OpenDAL sends the parts read before it.
    ///
    /// Memory: an upload first reserves `min(parts of the file, budget)` permits of the
    /// shared `parts` semaphore (SFTP: at most 2), all at once (so two uploads never
    /// each hold a part and wait for the other's), and holds them until it ends. Each
    /// part read takes one of those permits and gives it back when OpenDAL frees the
    /// part's bytes (the last clone dropped, a retry's included), so all uploads
    /// together hold at most `budget` parts, 6 × 5 MiB by default, however many run.
    ///
    /// No wait without end: S3's multipart writer keeps the last part written until the
    /// next arrives (or the upload closes), and keeps a part whose upload failed until
    /// the next write finds every slot busy, or the upload closes. While the reading
    /// thread waits for a permit the writer is idle, so OpenDAL must never hold all of
    /// them: an upload of more parts than permits (`budget` ≥ [`MIN_PARTS`] then) lets
    /// OpenDAL send `permits - 2` parts at once, so with those and the one it keeps a
    /// permit is always left for the next part, whose write finds the slots busy and
    /// sees a failure. An upload holding a permit per part never waits for one. SFTP's
    /// writer sends each part before it returns and keeps none.
    ///
    /// Errors: the file unreadable, or a different length at the end than at the start
    /// (a short or long object is never completed); otherwise OpenDAL's error.
    fn upload(&self, key: &str, local: &Path) -> Result<(), StorageError> {
        let io_err = |e: std::io::Error| StorageError::Other {
            key: key.to_string(),
            source: format!("read {}: {e}", local.display()).into(),
        };
        self.breaker.check(key)?;
        let mut file = std::fs::File::open(local).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let parts = len.div_ceil(PART as u64).max(1);
        let most = if self.sftp { 2 } else { self.budget as u64 };
        let reserve = parts.min(most) as u32;
        let _reservation = self.permits(key, &self.parts, reserve)?;
        let own = Arc::new(tokio::sync::Semaphore::new(reserve as usize));
        let sending = if parts > u64::from(reserve) && !self.sftp {
            (reserve as usize).saturating_sub(2).max(1)
        } else {
            reserve as usize
        };
        // `None` aborts the upload: a file that could not be read to its end must not
        // become a short object.
        let (part_tx, mut part_rx) = tokio::sync::mpsc::channel::<Option<bytes::Bytes>>(1);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let (op, k) = (self.op.clone(), key.to_string());
        let breaker = Arc::clone(&self.breaker);
        let stall = self.stall;
        let stalled = move || {
            opendal::Error::new(
                ErrorKind::Unexpected,
                format!(
                    "the upload made no progress for {} s: the server stopped answering",
                    stall.as_secs()
                ),
            )
        };
        self.rt.spawn(async move {
            let upload = async {
                // No `chunk`: each write is one part. With `chunk` OpenDAL would also
                // keep a full part in its own buffer until the next write.
                let mut w = op.writer_with(&k).concurrent(sending).await?;
                while let Some(part) = part_rx.recv().await {
                    let res = match part {
                        Some(bytes) => tokio::time::timeout(stall, w.write(bytes))
                            .await
                            .unwrap_or_else(|_| Err(stalled())),
                        None => Err(opendal::Error::new(
                            ErrorKind::Unexpected,
                            "the local file could not be read",
                        )),
                    };
                    if let Err(e) = res {
                        // Bounded: a server that stopped answering does not answer
                        // the abort either, and its retries took minutes more. An
                        // upload never completed is dropped by S3's lifecycle rules.
                        let _ = tokio::time::timeout(ABORT_WAIT, w.abort()).await;
                        return Err(e);
                    }
                }
                match tokio::time::timeout(stall, w.close()).await {
                    Ok(r) => r.map(|_| ()),
                    Err(_) => {
                        let _ = tokio::time::timeout(ABORT_WAIT, w.abort()).await;
                        Err(stalled())
                    }
                }
            };
            // Cut short when the breaker opens: the object never appears (S3 drops an
            // incomplete multipart upload; an SFTP temporary is an orphan).
            let r = breaker.guard(upload).await;
            let _ = done_tx.send(r);
        });
        let mut read_error = None;
        let mut left = len;
        while left > 0 {
            let permit = match self.permits(key, &own, 1) {
                Ok(p) => p,
                Err(e) => {
                    let _ = part_tx.blocking_send(None);
                    return Err(e);
                }
            };
            let mut buf = vec![0u8; left.min(PART as u64) as usize];
            if let Err(e) = file.read_exact(&mut buf) {
                read_error = Some(e);
                break;
            }
            left -= buf.len() as u64;
            let part = bytes::Bytes::from_owner(Part::new(buf, permit, &self.held));
            // A closed channel: the upload failed; its error comes below.
            if part_tx.blocking_send(Some(part)).is_err() {
                break;
            }
        }
        if read_error.is_none() && left == 0 {
            // The file must end where its length said.
            match file.read(&mut [0u8; 1]) {
                Ok(0) => {}
                Ok(_) => {
                    read_error = Some(std::io::Error::other(
                        "the file grew while it was being uploaded",
                    ))
                }
                Err(e) => read_error = Some(e),
            }
        }
        if read_error.is_some() {
            let _ = part_tx.blocking_send(None);
        }
        drop(part_tx);
        let result = match done_rx.recv() {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(e))) => {
                // Aborted because the local file failed: the server is not to blame.
                if read_error.is_none() {
                    self.breaker.observe(&e);
                }
                Err(map_error(key, e))
            }
            Ok(None) => Err(self.breaker.refusal(key)),
            Err(e) => Err(StorageError::Other {
                key: key.to_string(),
                source: Box::new(e),
            }),
        };
        match read_error {
            Some(e) => Err(io_err(e)),
            None => result,
        }
    }
}

/// One part of an upload: its bytes and the permit it holds until OpenDAL drops them
/// ([`Remote::upload`]), counted in `held` while alive.
struct Part {
    bytes: Vec<u8>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    held: Arc<Held>,
}

impl Part {
    fn new(bytes: Vec<u8>, permit: tokio::sync::OwnedSemaphorePermit, held: &Arc<Held>) -> Part {
        use std::sync::atomic::Ordering::SeqCst;
        let now = held.now.fetch_add(1, SeqCst) + 1;
        held.peak.fetch_max(now, SeqCst);
        Part {
            bytes,
            _permit: permit,
            held: Arc::clone(held),
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.held
            .now
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Storage for Remote {
    fn location(&self) -> String {
        self.location.to_string()
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let (op, k) = (self.op.clone(), key.to_string());
        self.run(key, async move { op.read(&k).await.map(|b| b.to_vec()) })
    }

    fn read_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let (op, k) = (self.op.clone(), key.to_string());
        // The body is copied into one buffer as it arrives, each piece freed once
        // copied: collecting it first (`read_with`) held the range twice at the end
        // (docs/BENCHMARKS.md, "Issue 9, sixth pass"). A server that sends more than
        // asked (one that ignores `Range`) is cut off at the first piece past `len`.
        // The capacity trusts `len` only up to 64 MiB; a longer range grows the buffer.
        let capacity = usize::try_from(len).unwrap_or(usize::MAX).min(64 << 20);
        let (buf, overlong) = self.run(key, async move {
            let pieces = op
                .reader_with(&k)
                .await?
                .into_stream(offset..offset + len)
                .await?;
            at_most(pieces, len, capacity).await
        })?;
        if overlong || buf.len() as u64 != len {
            let sent = if overlong {
                "more".to_string()
            } else {
                buf.len().to_string()
            };
            return Err(StorageError::Other {
                key: key.to_string(),
                source: format!("asked for {len} bytes at offset {offset}, the server sent {sent}")
                    .into(),
            });
        }
        Ok(buf)
    }

    fn write(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let bytes = bytes.to_vec();
        if self.sftp {
            let tmp = Self::temp_key(key);
            let (op, t) = (self.op.clone(), tmp.clone());
            self.run(key, async move { op.write(&t, bytes).await.map(|_| ()) })?;
            return self.publish(tmp, key);
        }
        let (op, k) = (self.op.clone(), key.to_string());
        self.run(key, async move { op.write(&k, bytes).await.map(|_| ()) })
    }

    fn write_file(&self, key: &str, local: &Path) -> Result<(), StorageError> {
        if self.sftp {
            let tmp = Self::temp_key(key);
            self.upload(&tmp, local)?;
            return self.publish(tmp, key);
        }
        self.upload(key, local)
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let (op, k, bytes) = (self.op.clone(), key.to_string(), bytes.to_vec());
        self.run(key, async move {
            op.write_with(&k, bytes)
                .if_not_exists(true)
                .await
                .map(|_| ())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, StorageError> {
        let (op, p) = (self.op.clone(), prefix.to_string());
        let entries = match self.run(
            prefix,
            async move { op.list_with(&p).recursive(true).await },
        ) {
            Ok(e) => e,
            // SFTP: the directory does not exist yet; S3 has no directories.
            Err(StorageError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let name = e.name();
            if e.metadata().is_dir() || name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let size = match e.metadata().content_length() {
                // A listing that does not carry sizes (some SFTP servers).
                0 if self.sftp => self.size(e.path())?,
                n => n,
            };
            out.push(Listed {
                key: e.path().trim_start_matches('/').to_string(),
                size,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn size(&self, key: &str) -> Result<u64, StorageError> {
        let (op, k) = (self.op.clone(), key.to_string());
        self.run(
            key,
            async move { op.stat(&k).await.map(|m| m.content_length()) },
        )
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let (op, k) = (self.op.clone(), key.to_string());
        match self.run(key, async move { op.delete(&k).await }) {
            Err(StorageError::NotFound { .. }) => Ok(()),
            r => r,
        }
    }

    fn local_root(&self) -> Option<&Path> {
        None
    }
}

/// Temporary objects start with this (the local layout uses the same prefix).
/// How long an upload that failed waits for the server to drop its parts (S3's
/// AbortMultipartUpload), retries included.
const ABORT_WAIT: Duration = Duration::from_secs(10);

const TEMP_PREFIX: &str = ".tmp-";

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// OpenDAL's error kind to [`StorageError`] (never by message text). The retry layer
/// marks every error it returns "persistent", retried or not, so the status cannot
/// tell a server that stopped answering from a refused request: the kind does.
/// `Unexpected` (a connection refused or cut, a timeout, a 5xx), `RateLimited` and
/// `Conflict` are what a later run may not meet: [`StorageError::Transient`].
fn map_error(key: &str, e: opendal::Error) -> StorageError {
    let key = key.to_string();
    match e.kind() {
        ErrorKind::NotFound => StorageError::NotFound { key },
        ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => {
            StorageError::AlreadyExists { key }
        }
        // reqsign found no credentials: nothing was sent, and no retry changes that.
        ErrorKind::Unexpected
            if !e.is_temporary() && e.to_string().contains("signing credential") =>
        {
            StorageError::Credentials {
                key,
                source: Box::new(e),
            }
        }
        ErrorKind::Unexpected | ErrorKind::RateLimited | ErrorKind::Conflict => {
            StorageError::Transient {
                key,
                source: Box::new(e),
            }
        }
        _ => StorageError::Other {
            key,
            source: Box::new(e),
        },
    }
}

/// The pieces of a body copied into one buffer (first allocated with `capacity`), each
/// dropped once copied: `(bytes, false)` at the end of the stream, `(the bytes so far,
/// true)` at the first piece that would take it past `len`, so an answer longer than
/// asked is never held whole. Errors: the stream's.
async fn at_most<S, B>(mut pieces: S, len: u64, capacity: usize) -> opendal::Result<(Vec<u8>, bool)>
where
    S: futures_util::Stream<Item = opendal::Result<B>> + Unpin,
    B: bytes::Buf,
{
    use futures_util::TryStreamExt;
    let mut buf = Vec::with_capacity(capacity);
    while let Some(piece) = pieces.try_next().await? {
        if (buf.len() + piece.remaining()) as u64 > len {
            return Ok((buf, true));
        }
        bytes::BufMut::put(&mut buf, piece);
    }
    Ok((buf, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn pieces(sizes: &[usize]) -> impl futures_util::Stream<Item = opendal::Result<Bytes>> + Unpin {
        let v: Vec<_> = sizes
            .iter()
            .map(|&n| Ok(Bytes::from(vec![7u8; n])))
            .collect();
        futures_util::stream::iter(v)
    }

    #[test]
    fn a_body_is_copied_whole_up_to_its_length_and_cut_off_past_it() {
        let (buf, over) = run(at_most(pieces(&[3, 4, 5]), 12, 12)).unwrap();
        assert_eq!((buf.len(), over), (12, false));
        // Short: all of it, not over (the caller's length check names it).
        let (buf, over) = run(at_most(pieces(&[3, 4]), 12, 12)).unwrap();
        assert_eq!((buf.len(), over), (7, false));
        // A server that ignores the range: stopped at the piece that passes it, with
        // nothing of that piece or after it held.
        let (buf, over) = run(at_most(pieces(&[3, 4, 5, 1 << 20]), 10, 0)).unwrap();
        assert_eq!((buf.len(), over), (7, true));
        // An error of the stream is the result.
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(opendal::Error::new(ErrorKind::Unexpected, "cut")),
        ]);
        assert!(run(at_most(failing, 10, 10)).is_err());
    }
}
