//! Moving a volume's contents as a tar stream through the engine.
//!
//! The engine's archive API (`GET`/`PUT /containers/{id}/archive`) works on a
//! container that was created but never started, so reading or restoring a
//! volume needs no image with a shell, no running process and no pull: a
//! helper container of the image `cbsnap-helper:1` (imported from an empty
//! tarball, zero bytes of layer) mounts the volume at `/volume`, read-only for
//! reading, and its command `/nonexistent` never runs. This is the route that
//! works with a remote engine or Docker Desktop, where the volume's mountpoint
//! is not on our file system.
//!
//! Helper containers carry the labels `cbsnap.helper=1`, `cbsnap.volume=<v>`
//! and the pid and host of their owner. They are force-removed when their
//! guard is dropped (also on error and panic), by the signal handler, and by
//! the next run's [`Engine::recover_quiesced`] if the owner was SIGKILLed;
//! a leftover would keep `docker volume rm` from working.
//!
//! Entry names: see the module docs of [`crate::docker`]: everything is `./…`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountTypeEnum, MountVolumeOptions};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions,
    UploadToContainerOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::signals::{self, ActiveHelper, Registry};
use super::undo::remove_helper;
use super::{status_of, DockerError, Engine};

/// The helper image: an empty file system.
pub const HELPER_IMAGE: &str = "cbsnap-helper:1";
/// Label on every helper container.
pub const HELPER_LABEL: &str = "cbsnap.helper";
/// Label naming the volume a helper container mounts.
pub const VOLUME_LABEL: &str = "cbsnap.volume";
const PID_LABEL: &str = "cbsnap.helper.pid";
const HOST_LABEL: &str = "cbsnap.helper.host";
/// Label with who the creating process was ([`crate::host::process_identity`]), so
/// that a later process given the same pid does not keep a dead run's helper.
const PROCESS_LABEL: &str = "cbsnap.helper.process";

/// Where helpers mount the volume.
const MOUNT_POINT: &str = "/volume";
/// What we ask Docker to archive: with the trailing `/.`, entries are named
/// `./…` instead of `volume/…`.
const ARCHIVE_PATH: &str = "/volume/.";

/// Chunks in flight between the Docker stream and the reader. Docker sends
/// chunks of at most a few hundred KiB, so this bounds memory to a few MiB.
const READ_CHANNEL: usize = 16;
/// Chunk size and count when uploading.
const WRITE_CHUNK: usize = 256 * 1024;
const WRITE_CHANNEL: usize = 8;

/// The path of a tar entry from [`Engine::read_volume_tar`] relative to the
/// volume root: `./sub/f` gives `sub/f`, and `./` (the root directory itself)
/// gives the empty path. `None` for a name without the `./` prefix or with a
/// `..` or absolute component, which Docker never produces.
pub fn volume_entry_path(name: &Path) -> Option<&Path> {
    let rel = name.strip_prefix(".").ok()?;
    rel.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(rel)
}

/// A created-never-started container mounting one volume; removed on drop.
struct HelperContainer {
    rt: Arc<tokio::runtime::Runtime>,
    docker: Docker,
    id: String,
    token: Option<u64>,
}

impl HelperContainer {
    /// Removes the container now, reporting failure.
    fn remove(&mut self) -> Result<(), DockerError> {
        let Some(token) = self.token.take() else {
            return Ok(());
        };
        // Held across the call, so the signal handler cannot miss it.
        let mut reg = signals::registry();
        match self.rt.block_on(remove_helper(&self.docker, &self.id)) {
            Ok(()) => {
                reg.helpers.remove(&token);
                Ok(())
            }
            Err(source) => {
                // Leave it registered: the signal handler may still get it.
                self.token = Some(token);
                Err(DockerError::Api {
                    action: format!(
                        "removing helper container {} (remove it with `docker rm -f {}`)",
                        self.id, self.id
                    ),
                    source,
                })
            }
        }
    }
}

impl Drop for HelperContainer {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            super::notice::tell(super::notice::Notice::Warning(e.to_string()));
            if let Some(token) = self.token.take() {
                signals::registry().helpers.remove(&token);
            }
        }
    }
}

/// The tar stream of a volume: entries named `./…` (see [`volume_entry_path`]).
///
/// Reading blocks until Docker sends more. A failure of Docker mid-stream is an
/// `io::Error` wrapping a [`DockerError`]; a stream that stops without Docker's
/// end is an error too, never a silent EOF. The helper container is removed
/// at the end of the stream, or when the reader is dropped.
pub struct VolumeTarReader {
    volume: String,
    rx: mpsc::Receiver<Msg>,
    buf: Bytes,
    finished: bool,
    pump: Option<tokio::task::JoinHandle<()>>,
    helper: Option<HelperContainer>,
}

enum Msg {
    Data(Bytes),
    Failed(BollardError),
    /// Docker's stream ended normally. Without it, a closed channel means the
    /// pump died, and the tar would be silently truncated.
    Done,
}

impl VolumeTarReader {
    /// Reads nothing more; removes the helper container and reports whether
    /// that worked (dropping the reader does the same, silently but for a
    /// warning on stderr).
    pub fn finish(mut self) -> Result<(), DockerError> {
        self.stop_pump();
        match self.helper.as_mut() {
            Some(helper) => helper.remove(),
            None => Ok(()),
        }
    }

    fn stop_pump(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
            // Wait until the HTTP stream is dropped: Docker keeps the helper
            // locked until its archive stream is closed.
            if let Some(helper) = &self.helper {
                let _ = helper.rt.block_on(pump);
            }
        }
    }

    fn fail(&mut self, err: DockerError) -> io::Error {
        self.finished = true;
        io::Error::other(err)
    }
}

impl Read for VolumeTarReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.buf.is_empty() {
                let n = out.len().min(self.buf.len());
                out[..n].copy_from_slice(&self.buf.split_to(n));
                return Ok(n);
            }
            if self.finished {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(bytes)) => self.buf = bytes,
                Some(Msg::Done) => {
                    self.finished = true;
                    self.pump = None;
                    // The data is complete; a failed removal is retried and
                    // reported by drop rather than failing the backup.
                    if let Some(helper) = self.helper.as_mut() {
                        if helper.remove().is_ok() {
                            self.helper = None;
                        }
                    }
                    return Ok(0);
                }
                Some(Msg::Failed(source)) => {
                    let err = DockerError::Api {
                        action: format!("reading volume {}", self.volume),
                        source,
                    };
                    return Err(self.fail(err));
                }
                None => {
                    let volume = self.volume.clone();
                    return Err(self.fail(DockerError::TruncatedStream { volume }));
                }
            }
        }
    }
}

impl Drop for VolumeTarReader {
    fn drop(&mut self) {
        // Pump first: removing the helper waits for its stream to close.
        self.stop_pump();
    }
}

/// Mode, owner and mtime of a volume's top directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RootMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// `block` as a tar header, if its checksum is right.
fn valid_header(block: &[u8]) -> Option<&tar::Header> {
    let block: &[u8; 512] = block.try_into().ok()?;
    // Checksum: the sum of all bytes, with the checksum field read as spaces.
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum();
    let header = tar::Header::from_byte_slice(block);
    (u64::from(header.cksum().ok()?) == sum).then_some(header)
}

/// The root directory's metadata, if `block` is a valid tar header of the
/// entry `./` (or `.`).
fn root_meta(block: &[u8]) -> Option<RootMeta> {
    let header = valid_header(block)?;
    if header.entry_type() != tar::EntryType::Directory {
        return None;
    }
    let path = header.path_bytes();
    let path: &[u8] = &path;
    if path != b"." && path != b"./" {
        return None;
    }
    Some(RootMeta {
        mode: header.mode().ok()?,
        uid: header.uid().ok()?,
        gid: header.gid().ok()?,
        mtime: header.mtime().ok()?,
    })
}

/// The largest PAX extended header read ahead of the root entry: the root's
/// records (xattrs, times) are small; past this the root is left as Docker makes it.
const MAX_ROOT_PAX: u64 = 1 << 20;

/// Reads the stream's first entry: its header and, when a PAX extended header
/// comes first (`restore::tar::dump` writes one for a root with xattrs or a
/// sub-second mtime, as every snapshot read through the mountpoint has), that
/// header and its records too. Returns the bytes read, to be sent on unchanged, and
/// the root directory's metadata if the entry is the root.
fn read_first_entry(reader: &mut impl Read) -> io::Result<(Vec<u8>, Option<RootMeta>)> {
    let mut buf = vec![0u8; 512];
    let n = read_full(reader, &mut buf)?;
    buf.truncate(n);
    let mut at = 0;
    let pax = valid_header(&buf)
        .filter(|h| h.entry_type() == tar::EntryType::XHeader)
        .and_then(|h| h.size().ok())
        .filter(|&size| size <= MAX_ROOT_PAX);
    if let Some(size) = pax {
        let records = usize::try_from(size.div_ceil(512) * 512).unwrap_or(usize::MAX);
        let mut more = vec![0u8; records + 512];
        let m = read_full(reader, &mut more)?;
        more.truncate(m);
        buf.extend_from_slice(&more);
        at = 512 + records;
    }
    let root = buf.get(at..at + 512).and_then(root_meta);
    Ok((buf, root))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

static HELPER_SEQ: AtomicU64 = AtomicU64::new(0);

impl Engine {
    /// Makes sure the helper image exists, importing it from an empty tarball
    /// if needed (nothing is pulled).
    pub fn ensure_helper_image(&self) -> Result<(), DockerError> {
        match self.block_on(self.docker.inspect_image(HELPER_IMAGE)) {
            Ok(_) => return Ok(()),
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => return Err(self.err("inspecting the helper image", e)),
        }
        // `docker import`, i.e. POST /images/create?fromSrc=-. (bollard's
        // `import_image` is `docker load`, which wants an image archive.)
        // A tar of zero entries is its end marker: two 512-byte zero blocks.
        let options = CreateImageOptions {
            from_src: Some("-".to_string()),
            repo: Some("cbsnap-helper".to_string()),
            tag: Some("1".to_string()),
            ..Default::default()
        };
        let empty_tar = bollard::body_full(Bytes::from(vec![0u8; 1024]));
        let docker = self.docker.clone();
        let result = self.block_on(async move {
            let mut progress = docker.create_image(Some(options), Some(empty_tar), None);
            while let Some(item) = progress.next().await {
                item?;
            }
            Ok::<_, BollardError>(())
        });
        if let Err(e) = result {
            return Err(match self.err("importing the helper image", e) {
                DockerError::Api { source, .. } => DockerError::HelperImage {
                    detail: source.to_string(),
                },
                other => other,
            });
        }
        match self.block_on(self.docker.inspect_image(HELPER_IMAGE)) {
            Ok(_) => Ok(()),
            Err(e) => Err(DockerError::HelperImage {
                detail: format!("imported, but not found afterwards: {e}"),
            }),
        }
    }

    /// Creates a helper container mounting `volume` at `/volume`.
    fn create_helper(&self, volume: &str, read_only: bool) -> Result<HelperContainer, DockerError> {
        signals::install()?;
        let pid = std::process::id();
        let seq = HELPER_SEQ.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("cbsnap-helper-{pid}-{seq}-{nanos:08x}");
        let mut labels = HashMap::from([
            (HELPER_LABEL.to_string(), "1".to_string()),
            (VOLUME_LABEL.to_string(), volume.to_string()),
            (PID_LABEL.to_string(), pid.to_string()),
            (HOST_LABEL.to_string(), crate::host::hostname()),
        ]);
        if let Some(who) = crate::host::process_identity(std::process::id()) {
            labels.insert(PROCESS_LABEL.to_string(), who);
        }
        let mount = Mount {
            target: Some(MOUNT_POINT.to_string()),
            source: Some(volume.to_string()),
            typ: Some(MountTypeEnum::VOLUME),
            read_only: Some(read_only),
            // The image is empty, but never copy anything into a volume.
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(HELPER_IMAGE.to_string()),
            cmd: Some(vec!["/nonexistent".to_string()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                mounts: Some(vec![mount]),
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        // Held across create + register, so a signal cannot leak the helper.
        let mut reg = signals::registry();
        let created = self
            .block_on(self.docker.create_container(Some(options), body))
            .map_err(|e| {
                self.err(
                    format!("creating a helper container for volume {volume}"),
                    e,
                )
            })?;
        let token = reg.token();
        reg.helpers.insert(
            token,
            ActiveHelper {
                docker: self.docker.clone(),
                id: created.id.clone(),
            },
        );
        Ok(HelperContainer {
            rt: self.rt.clone(),
            docker: self.docker.clone(),
            id: created.id,
            token: Some(token),
        })
    }

    /// Streams the contents of `volume` as a tar whose entries are named `./…`
    /// (the root directory is `./`). Memory use is bounded: the stream is never
    /// buffered whole. Errors from Docker before the first byte (missing
    /// volume, engine down) are returned here rather than on the first read.
    ///
    /// Quiesce the containers using the volume first if the copy must be
    /// consistent; reading does not stop anyone from writing.
    pub fn read_volume_tar(&self, volume: &str) -> Result<VolumeTarReader, DockerError> {
        // A container mounting a missing volume would silently create it: look
        // before, and compare the volume's identity (creation time, labels) after the
        // helper mounts it. From then on the mount holds it (`docker volume rm`
        // refuses a volume in use). CreatedAt has whole seconds: a volume without
        // labels removed and made again within the same second is not told apart.
        let Some(before) = self.volume_identity(volume)? else {
            return Err(DockerError::NoSuchVolume {
                name: volume.to_string(),
            });
        };
        self.ensure_helper_image()?;
        let mut helper = self.create_helper(volume, true)?;
        let after = self.volume_identity(volume)?;
        if after.as_ref() != Some(&before) {
            helper.remove()?;
            let removed_empty = match after {
                Some(a) => self.remove_volume_the_helper_made(volume, &a.labels),
                None => false,
            };
            return Err(DockerError::VolumeChanged {
                name: volume.to_string(),
                removed_empty,
            });
        }

        let (tx, mut rx) = mpsc::channel(READ_CHANNEL);
        let docker = self.docker.clone();
        let id = helper.id.clone();
        let pump = self.rt.spawn(async move {
            let options = DownloadFromContainerOptions {
                path: ARCHIVE_PATH.to_string(),
            };
            let mut stream = docker.download_from_container(&id, Some(options));
            while let Some(item) = stream.next().await {
                let (msg, last) = match item {
                    Ok(bytes) => (Msg::Data(bytes), false),
                    Err(e) => (Msg::Failed(e), true),
                };
                if tx.send(msg).await.is_err() || last {
                    return;
                }
            }
            let _ = tx.send(Msg::Done).await;
        });

        let first = rx.blocking_recv();
        let mut reader = VolumeTarReader {
            volume: volume.to_string(),
            rx,
            buf: Bytes::new(),
            finished: false,
            pump: Some(pump),
            helper: Some(helper),
        };
        // Dropping `reader` on an error removes the helper.
        match first {
            Some(Msg::Data(bytes)) => reader.buf = bytes,
            Some(Msg::Done) => reader.finished = true,
            Some(Msg::Failed(e)) => return Err(self.err(format!("reading volume {volume}"), e)),
            None => {
                return Err(DockerError::TruncatedStream {
                    volume: volume.to_string(),
                })
            }
        }
        Ok(reader)
    }

    /// Remove the volume Docker created when the helper mounted a name that no longer
    /// existed: only if it carries no labels (Compose labels every volume it makes)
    /// and no container but ours uses it. Returns whether it was removed.
    fn remove_volume_the_helper_made(
        &self,
        volume: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        labels.is_empty()
            && self
                .containers_using_volume_all(volume)
                .is_ok_and(|users| users.is_empty())
            && self.remove_volume(volume).is_ok()
    }

    /// Extracts a tar stream into `volume` (which must exist), streaming it:
    /// entries named `./…` or bare relative names land under the volume root.
    /// Ownership is taken from the tar headers.
    ///
    /// If the stream starts with the root directory entry (`./` or `.`, a
    /// ustar/GNU header as [`Engine::read_volume_tar`] produces, possibly after a
    /// PAX extended header), its mode, owner and mtime are applied to the
    /// volume's top directory afterwards: Docker skips that entry, and a service
    /// running as a non-root user (Postgres) needs its volume root to be its own.
    ///
    /// Files already in the volume are overwritten or kept, never deleted:
    /// restore into an empty volume for an exact copy. On error the volume
    /// may hold part of the tar.
    pub fn write_volume_tar(
        &self,
        volume: &str,
        mut reader: impl Read + Send,
    ) -> Result<(), DockerError> {
        self.require_volume(volume)?;
        self.ensure_helper_image()?;
        let mut helper = self.create_helper(volume, false)?;

        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(WRITE_CHANNEL);
        let body =
            bollard::body_try_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }));
        let docker = self.upload_client();
        let id = helper.id.clone();
        let upload = self.rt.spawn(async move {
            let options = UploadToContainerOptions {
                path: MOUNT_POINT.to_string(),
                ..Default::default()
            };
            docker.upload_to_container(&id, Some(options), body).await
        });

        // Read on this thread: `reader` need not be 'static.
        let mut read_err = None;
        let mut root = None;
        match read_first_entry(&mut reader) {
            Ok((first, meta)) => {
                root = meta;
                // A failure means the upload already ended; its answer says why.
                let _ = tx.blocking_send(Ok(Bytes::from(first)));
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(io::Error::other("restore source failed")));
                read_err = Some(e);
            }
        }
        while read_err.is_none() {
            let mut chunk = vec![0u8; WRITE_CHUNK];
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Abort the request body, so Docker does not take a
                    // truncated tar for a complete one.
                    let _ = tx.blocking_send(Err(io::Error::other("restore source failed")));
                    read_err = Some(e);
                    break;
                }
            };
            chunk.truncate(n);
            if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                // Docker ended the request early; its answer says why.
                break;
            }
        }
        drop(tx);
        let mut uploaded = self.rt.block_on(upload);
        if let (Some(root), Ok(Ok(()))) = (root, &uploaded) {
            uploaded = Ok(self.set_volume_root(&helper.id, root));
        }
        let removed = helper.remove();

        if let Some(source) = read_err {
            return Err(DockerError::Io {
                action: format!("reading the tar to restore into volume {volume}"),
                source,
            });
        }
        match uploaded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.err(format!("restoring into volume {volume}"), e)),
            Err(join) => {
                return Err(DockerError::Io {
                    action: format!("restoring into volume {volume}"),
                    source: io::Error::other(join),
                })
            }
        }
        removed
    }

    /// Applies `root` to the volume's top directory: a one-entry tar naming
    /// the mount point `volume/`, extracted at `/` of the helper. Docker
    /// merges a directory entry into an existing directory by applying its
    /// metadata, which it refuses to do for `.`.
    fn set_volume_root(&self, helper_id: &str, root: RootMeta) -> Result<(), BollardError> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(root.mode);
        header.set_uid(root.uid);
        header.set_gid(root.gid);
        header.set_mtime(root.mtime);
        header.set_size(0);
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_data(
            &mut header,
            MOUNT_POINT.trim_start_matches('/'),
            io::empty(),
        )?;
        let bytes = tar.into_inner()?;
        let options = UploadToContainerOptions {
            path: "/".to_string(),
            ..Default::default()
        };
        self.block_on(self.docker.upload_to_container(
            helper_id,
            Some(options),
            bollard::body_full(Bytes::from(bytes)),
        ))
    }

    /// Removes helper containers whose owner, a cbsnap process on this host,
    /// is gone (SIGKILLed). Returns their ids.
    pub(super) fn remove_stale_helpers(&self, reg: &Registry) -> Result<Vec<String>, DockerError> {
        let list = self.list_all_containers("label", HELPER_LABEL, "listing helper containers")?;
        let me = std::process::id();
        let host = crate::host::hostname();
        let mut removed = Vec::new();
        for c in list {
            let (Some(id), Some(labels)) = (c.id, c.labels) else {
                continue;
            };
            if labels.get(HOST_LABEL) != Some(&host) {
                continue;
            }
            let Some(pid) = labels.get(PID_LABEL).and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let stale = if pid == me {
                !reg.holds_helper(&id)
            } else {
                !crate::host::recorded_process_alive(
                    pid,
                    labels.get(PROCESS_LABEL).map(String::as_str),
                )
            };
            if stale {
                self.block_on(remove_helper(&self.docker, &id))
                    .map_err(|e| self.err(format!("removing stale helper container {id}"), e))?;
                removed.push(id);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_header(path: &str, mode: u32) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path(path).unwrap();
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn the_root_entry_is_recognised() {
        let want = RootMeta {
            mode: 0o750,
            uid: 1000,
            gid: 1001,
            mtime: 1_700_000_000,
        };
        assert_eq!(root_meta(&dir_header(".", 0o750)), Some(want));
        let mut dot_slash = dir_header(".", 0o750);
        dot_slash[..3].copy_from_slice(b"./\0");
        let mut h = tar::Header::from_byte_slice(&dot_slash).clone();
        h.set_cksum();
        assert_eq!(root_meta(h.as_bytes()), Some(want));
        assert_eq!(root_meta(&dir_header("sub", 0o750)), None);
        let mut corrupt = dir_header(".", 0o750);
        corrupt[100] ^= 1;
        assert_eq!(root_meta(&corrupt), None, "bad checksum");
        assert_eq!(root_meta(&[0u8; 512]), None);
        assert_eq!(root_meta(b"short"), None);
    }

    /// Issue: a snapshot read through the mountpoint has a sub-second mtime on its
    /// root, so its dump starts with a PAX header; the root's owner and mode were
    /// lost on the archive restore (999:999 0770 came back 0:0 0755).
    #[test]
    fn the_root_entry_is_found_after_a_pax_header() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("mtime", b"1700000000.5".as_slice())])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o770);
        h.set_uid(999);
        h.set_gid(999);
        h.set_mtime(1_700_000_000);
        h.set_size(0);
        b.append_data(&mut h, "./", io::empty()).unwrap();
        b.append_data(&mut tar::Header::new_gnu(), "f", io::empty())
            .unwrap();
        let bytes = b.into_inner().unwrap();
        let mut reader = bytes.as_slice();
        let (read, root) = read_first_entry(&mut reader).unwrap();
        let root = root.expect("the root entry after the PAX header");
        assert_eq!((root.mode, root.uid, root.gid), (0o770, 999, 999));
        // Everything read is passed on, in order.
        assert_eq!([read.as_slice(), reader].concat(), bytes);
        // No PAX header: the first block is the root, as before.
        let (_, plain) = read_first_entry(&mut dir_header(".", 0o750).as_slice()).unwrap();
        assert_eq!(plain.map(|r| r.mode), Some(0o750));
        // A stream shorter than a block is passed on whole.
        let (short, none) = read_first_entry(&mut b"abc".as_slice()).unwrap();
        assert_eq!((short.as_slice(), none), (b"abc".as_slice(), None));
    }

    #[test]
    fn entry_paths_lose_the_dot_prefix() {
        assert_eq!(volume_entry_path(Path::new("./")), Some(Path::new("")));
        assert_eq!(volume_entry_path(Path::new(".")), Some(Path::new("")));
        assert_eq!(
            volume_entry_path(Path::new("./a.txt")),
            Some(Path::new("a.txt"))
        );
        assert_eq!(
            volume_entry_path(Path::new("./sub/deep/")),
            Some(Path::new("sub/deep"))
        );
        assert_eq!(volume_entry_path(Path::new("volume/a")), None);
        assert_eq!(volume_entry_path(Path::new("a")), None);
        assert_eq!(volume_entry_path(Path::new("./../etc/passwd")), None);
        assert_eq!(volume_entry_path(Path::new("/etc/passwd")), None);
    }
}
