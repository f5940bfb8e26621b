//! Snapshot files: the only commit point of the repository.
//!
//! A snapshot is written after every pack it references is durable and indexed, so a
//! crash at any moment before leaves orphaned packs, never a snapshot with missing
//! data. Layout: `"CBSNAPSN"` || u32 LE version || UTF-8 JSON of [`Snapshot`]; the file
//! is named by the BLAKE3 of its bytes under `snapshots/`. In an encrypted repository
//! that whole file is sealed in an envelope: `"CBSNAPSE"` || u32 LE version (=1) ||
//! `nonce || ciphertext || tag` ([`crate::crypto`]), and the name is the BLAKE3 of the
//! envelope.

use std::path::PathBuf;

use chrono::{DateTime, Local, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{Crypt, Purpose};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::storage::{self, Storage, StorageError};

pub const MAGIC: &[u8; 8] = b"CBSNAPSN";
/// The version this cbsnap writes. Version 2 added the optional `run` field; version 1
/// files (without it) are still read.
pub const VERSION: u32 = 2;
/// The oldest version still read.
pub const MIN_VERSION: u32 = 1;
/// The magic of the sealed envelope of a snapshot file in an encrypted repository.
pub const SEALED_MAGIC: &[u8; 8] = b"CBSNAPSE";
/// The envelope's version.
pub const SEALED_VERSION: u32 = 1;

/// What kind of source a snapshot was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Volume,
    Path,
    Tar,
}

/// Metadata of the snapshot's root directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Sum of the sizes of the regular files.
    pub bytes: u64,
    /// Files whose content was taken from the parent snapshot without reading them.
    pub files_unchanged: u64,
    /// Bytes of file content actually read from the source (unchanged files taken
    /// from the parent are not read); format version 2, 0 in older snapshots.
    #[serde(default)]
    pub bytes_read: u64,
    /// Blobs this snapshot added to the repository, their raw and stored bytes.
    pub new_blobs: u64,
    pub new_bytes_raw: u64,
    pub new_bytes_stored: u64,
    pub duration_secs: f64,
}

/// An entry the snapshot does not hold exactly as the source had it: left out (the
/// source could not read it, or the format cannot hold it), or stored otherwise than
/// it was (changed while read, POSIX ACLs left out, an owner name cut). `error` says
/// which, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    pub path: String,
    pub error: String,
    /// Whether the entry is in the snapshot nonetheless, not exactly as the source
    /// had it (`false`: left out, wholly or in part). Known to the run that recorded
    /// it, for its summary; not written to the snapshot file (FORMAT.md's `errors`
    /// are `path` and `error`, whose words say the same), so `false` when read back.
    #[serde(skip)]
    pub stored: bool,
}

/// An entry the source left out on purpose: not in the snapshot, and not an error
/// (the snapshot is complete without it). A directory walk leaves out the repository
/// the snapshot writes to (`why`: "it is this snapshot's repository").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Excluded {
    pub path: String,
    pub why: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub kind: SourceKind,
    /// Where the data came from: `{"path": …}`, `{"tar": …}` or `{"volume": {…}}`.
    pub origin: serde_json::Value,
    pub hostname: String,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub parent: Option<Id>,
    /// Shared by every snapshot of one `snapshot --all` run.
    #[serde(default)]
    pub run_id: Option<String>,
    /// What the `snapshot --all` run set out to cover (format version 2), so a
    /// restore can tell a complete run from one that missed sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunPlan>,
    /// How the source was kept still while read: "paused", "stopped" or "live".
    #[serde(default)]
    pub consistency: Option<String>,
    pub tree: Id,
    pub root: RootMeta,
    pub stats: SnapshotStats,
    #[serde(default)]
    pub errors: Vec<FileError>,
    /// Entries left out on purpose. Written only when there are any; added to
    /// version 2 without a version change, since readers ignore fields they do not
    /// know (FORMAT.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<Excluded>,
    pub cbsnap_version: String,
}

/// What a `snapshot --all` run set out to cover; recorded in each of its snapshots
/// (snapshot format version 2, field `run`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    /// The compose project whose volumes the run took.
    pub project: String,
    /// Every source (by source name) the run set out to snapshot, sorted.
    pub expected: Vec<String>,
    /// Sources left out by `--exclude` on the command line. Excludes of the config
    /// file are the standing policy and do not make a run incomplete.
    #[serde(default)]
    pub excluded: Vec<String>,
    /// Groups of sources that could not be listed, with why, e.g.
    /// `volumes of code-buddy: Cannot reach the Docker engine …`.
    #[serde(default)]
    pub unlisted: Vec<String>,
}

impl Snapshot {
    /// The host directory the snapshot was taken from: `origin.path` of a `path`
    /// snapshot (absolute, as recorded). `None` for a volume or a tar stream, which
    /// record no host directory.
    pub fn origin_path(&self) -> Option<PathBuf> {
        #[derive(Deserialize)]
        struct PathOrigin {
            path: PathBuf,
        }
        match self.kind {
            SourceKind::Path => serde_json::from_value::<PathOrigin>(self.origin.clone())
                .ok()
                .map(|o| o.path),
            SourceKind::Volume | SourceKind::Tar => None,
        }
    }

    /// The root directory as a tree node (nameless).
    pub fn root_node(&self) -> crate::tree::Node {
        let mut root = crate::tree::Node::new(Vec::new(), crate::tree::NodeKind::Dir);
        root.mode = self.root.mode;
        root.uid = self.root.uid;
        root.gid = self.root.gid;
        root.mtime = self.root.mtime;
        root.mtime_nsec = self.root.mtime_nsec;
        root
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = codec::header(MAGIC, VERSION).to_vec();
        out.extend_from_slice(
            serde_json::to_string_pretty(self)
                .expect("snapshot serializes")
                .as_bytes(),
        );
        out.push(b'\n');
        out
    }

    /// Parse a snapshot file's bytes (any version this build reads).
    ///
    /// Errors: [`DecodeError`] (a bad header, an unsupported version, JSON that is
    /// not a snapshot).
    pub fn decode(buf: &[u8]) -> std::result::Result<Snapshot, DecodeError> {
        let v = codec::check_header(buf, MAGIC, "snapshot")?;
        if !(MIN_VERSION..=VERSION).contains(&v) {
            return Err(DecodeError::Unsupported(v));
        }
        serde_json::from_slice(&buf[codec::HEADER_LEN..])
            .map_err(|e| DecodeError::Json(e.to_string()))
    }

    /// The file's bytes: [`Snapshot::encode`], sealed in the envelope when `crypt`
    /// encrypts.
    ///
    /// Errors: [`Error::Crypto`] when the OS has no random bytes for the nonce.
    pub fn encode_file(&self, crypt: &Crypt) -> Result<Vec<u8>> {
        if !crypt.is_encrypted() {
            return Ok(self.encode());
        }
        let mut out = codec::header(SEALED_MAGIC, SEALED_VERSION).to_vec();
        out.extend_from_slice(&crypt.seal(Purpose::Snapshot, self.encode())?);
        Ok(out)
    }

    /// Read a snapshot file of a repository that protects its data with `crypt`. An
    /// encrypted repository accepts only sealed files (an unsealed one was not written
    /// by a holder of the key), an unencrypted one only plain files.
    ///
    /// Errors: [`DecodeError::SealedInPlain`], [`DecodeError::PlainInSealed`],
    /// [`DecodeError::Auth`] (damaged, or sealed with another key), and those of
    /// [`Snapshot::decode`].
    pub fn decode_file(buf: &[u8], crypt: &Crypt) -> std::result::Result<Snapshot, DecodeError> {
        if !crypt.is_encrypted() {
            if buf.starts_with(SEALED_MAGIC) {
                return Err(DecodeError::SealedInPlain);
            }
            return Snapshot::decode(buf);
        }
        if buf.starts_with(MAGIC) {
            return Err(DecodeError::PlainInSealed);
        }
        let v = codec::check_header(buf, SEALED_MAGIC, "sealed snapshot")?;
        if v != SEALED_VERSION {
            return Err(DecodeError::SealedUnsupported(v));
        }
        let inner = crypt.open(Purpose::Snapshot, buf[codec::HEADER_LEN..].to_vec())?;
        Snapshot::decode(&inner)
    }

    /// Commit the snapshot: write it durably under `snapshots/<id>`, sealed when
    /// `crypt` encrypts. This is the commit point; the caller must have made every
    /// pack it references durable first.
    pub fn save(&self, storage: &dyn Storage, crypt: &Crypt) -> Result<Id> {
        let bytes = self.encode_file(crypt)?;
        let id = Id::hash(&bytes);
        storage
            .write(&snapshot_key(&id), &bytes)
            .map_err(|e| crate::error::engine_error(storage, "write snapshot", e))?;
        Ok(id)
    }
}

/// Why a file under `snapshots/` is not a snapshot this build can use: what `check`
/// reports for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotFileError {
    /// The file could not be read (permissions, I/O error).
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// Its BLAKE3 is not its name: a flipped byte, or truncated by a lost write.
    #[error("does not match its name (damaged or truncated)")]
    NameMismatch,
    /// It matches its name but does not decode (a newer version, malformed JSON).
    #[error("{0}")]
    Undecodable(#[from] DecodeError),
}

/// Why bytes are not a snapshot this build reads ([`Snapshot::decode`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The file does not start with the snapshot magic and a version.
    #[error(transparent)]
    Header(#[from] codec::DecodeError),
    /// A version outside `MIN_VERSION..=VERSION`: written by a newer cbsnap.
    #[error("snapshot version {0} is not supported; upgrade cbsnap")]
    Unsupported(u32),
    /// The body is not the JSON of a snapshot (the rendered `serde_json` error).
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A sealed snapshot in a repository whose config says it is not encrypted.
    #[error("is encrypted, but the repository's config says it is not")]
    SealedInPlain,
    /// A plain snapshot in an encrypted repository: not written by a holder of its key.
    #[error(
        "is not encrypted in an encrypted repository (not written by a holder of its key); ignored"
    )]
    PlainInSealed,
    /// A sealed-envelope version this build does not know: written by a newer cbsnap.
    #[error("sealed snapshot version {0} is not supported; upgrade cbsnap")]
    SealedUnsupported(u32),
    /// The sealed body does not authenticate with the repository's key.
    #[error(transparent)]
    Auth(#[from] crate::crypto::AuthError),
}

/// A file under `snapshots/` that is not a readable snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSnapshot {
    /// The id its name claims.
    pub id: Id,
    pub path: PathBuf,
    pub reason: SnapshotFileError,
}

/// Every file under `snapshots/`: the readable snapshots (oldest first) and the
/// damaged ones. Selectors that depend on order (`latest`, `latest~N`, dates) need
/// both: a damaged file may be the snapshot the user means.
#[derive(Debug, Default, Clone)]
pub struct SnapshotSet {
    pub snapshots: Vec<(Id, Snapshot)>,
    pub damaged: Vec<DamagedSnapshot>,
}

/// Read and verify every snapshot file of the repository `storage`, opening them
/// with `crypt`.
///
/// Errors: only a failure to list `snapshots/`; a file that cannot be read or
/// verified is recorded in [`SnapshotSet::damaged`].
pub fn scan(storage: &dyn Storage, crypt: &Crypt) -> Result<SnapshotSet> {
    Ok(read_listed(storage, crypt, &list(storage)?))
}

/// The keys under `snapshots/`, as listed now: what a reader lists before it opens
/// the index (FORMAT.md, "Reading order"), to read later with [`read_listed`].
///
/// Errors: a failure to list `snapshots/`.
pub fn list(storage: &dyn Storage) -> Result<Vec<String>> {
    let listed = storage
        .list("snapshots/")
        .map_err(|e| crate::error::engine_error(storage, "list", e))?;
    Ok(listed.into_iter().map(|l| l.key).collect())
}

/// How many snapshot files [`read_listed`] reads at once. The reads wait on the disk
/// or the network, not on a core: a cold disk and an object store both serve several
/// at once, and every command that picks a snapshot reads them all (thirty volumes
/// kept 7 daily, 4 weekly and 12 monthly are ~690 files; 60 through a 20 ms delay:
/// 2.35–3.08 s one at a time, 1.08–1.36 s eight at a time, docs/BENCHMARKS.md).
const SNAPSHOT_READERS: usize = 8;

/// Read and verify the snapshot files `keys` (from [`list`]), as [`scan`] does,
/// [`SNAPSHOT_READERS`] at a time. A file removed since the listing (a `forget`
/// running alongside) is skipped: it is not damage.
pub fn read_listed(storage: &dyn Storage, crypt: &Crypt, keys: &[String]) -> SnapshotSet {
    use rayon::prelude::*;
    let ids: Vec<(Id, &String)> = keys
        .iter()
        .filter_map(|key| Some((key.strip_prefix("snapshots/")?.parse().ok()?, key)))
        .collect();
    let read = |&(id, key): &(Id, &String)| {
        read_one(storage, crypt, id, key).map(|v| (id, key.clone(), v))
    };
    let verdicts: Vec<_> = if ids.len() < 2 {
        ids.iter().filter_map(read).collect()
    } else {
        storage::in_flight(SNAPSHOT_READERS.min(ids.len()), || {
            ids.par_iter().filter_map(read).collect()
        })
    };
    let mut set = SnapshotSet::default();
    for (id, key, verdict) in verdicts {
        match verdict {
            Ok(s) => set.snapshots.push((id, s)),
            Err(reason) => set.damaged.push(DamagedSnapshot {
                id,
                path: storage::display_path(storage, &key),
                reason,
            }),
        }
    }
    set.snapshots
        .sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    set.damaged.sort_by(|a, b| a.path.cmp(&b.path));
    set
}

/// The snapshot file `key` of id `id`, read and verified; `None` when it was removed
/// since the listing (a `forget` running alongside): not damage.
fn read_one(
    storage: &dyn Storage,
    crypt: &Crypt,
    id: Id,
    key: &str,
) -> Option<std::result::Result<Snapshot, SnapshotFileError>> {
    Some(match storage.read(key) {
        Err(StorageError::NotFound { .. }) => return None,
        Err(err) => Err(SnapshotFileError::Unreadable(unreadable_reason(err))),
        Ok(b) if Id::hash(&b) != id => Err(SnapshotFileError::NameMismatch),
        Ok(b) => Snapshot::decode_file(&b, crypt).map_err(SnapshotFileError::from),
    })
}

/// Why a snapshot file could not be read, as `check` words it: the error of the
/// storage without the key (the report names the file).
fn unreadable_reason(e: StorageError) -> String {
    match e {
        StorageError::Other { source, .. } | StorageError::Transient { source, .. } => {
            source.to_string()
        }
        other => other.to_string(),
    }
}

/// All snapshots, oldest first. Damaged files are skipped, each with a
/// [`Warning::SnapshotSkipped`](crate::warn::Warning::SnapshotSkipped); commands that
/// pick a snapshot use [`scan`] and [`resolve_in`] instead.
pub fn load_all(storage: &dyn Storage, crypt: &Crypt) -> Result<Vec<(Id, Snapshot)>> {
    Ok(readable(scan(storage, crypt)?))
}

/// The readable snapshots of `set`, each damaged file skipped with a
/// [`Warning::SnapshotSkipped`](crate::warn::Warning::SnapshotSkipped).
pub fn readable(set: SnapshotSet) -> Vec<(Id, Snapshot)> {
    for d in set.damaged {
        crate::warn::emit(crate::warn::Warning::SnapshotSkipped {
            path: d.path,
            reason: d.reason.to_string(),
        });
    }
    set.snapshots
}

/// Resolve `spec` as [`resolve`] does, over every snapshot file: when a snapshot file
/// is damaged, a selector that depends on order (`latest`, `latest~N`, a date, a
/// bare name) is an error naming that file, since the damaged file may be the
/// snapshot meant. Only an explicit id (`NAME@<id prefix>` or a bare id prefix) of a
/// readable snapshot picks one anyway.
///
/// Errors: [`Error::DamagedSnapshots`] as above (also when the id names a damaged
/// file), and every error of [`resolve`].
pub fn resolve_in(set: &SnapshotSet, spec: &str, project: Option<&str>) -> Result<(Id, Snapshot)> {
    let is_id = |s: &str| s.len() >= 4 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let explicit = match spec.rsplit_once('@') {
        Some((_, sel)) => is_id(sel).then(|| sel.to_ascii_lowercase()),
        None => {
            let unique = set
                .snapshots
                .iter()
                .filter(|(id, _)| id.to_hex().starts_with(&spec.to_ascii_lowercase()))
                .count()
                == 1;
            (is_id(spec) && unique).then(|| spec.to_ascii_lowercase())
        }
    };
    let blocking: Vec<&DamagedSnapshot> = match &explicit {
        Some(prefix) => set
            .damaged
            .iter()
            .filter(|d| d.id.to_hex().starts_with(prefix.as_str()))
            .collect(),
        None => set.damaged.iter().collect(),
    };
    if !blocking.is_empty() {
        return Err(Error::DamagedSnapshots {
            spec: spec.to_string(),
            files: blocking
                .iter()
                .map(|d| (d.path.clone(), d.reason.to_string()))
                .collect(),
        });
    }
    resolve(&set.snapshots, spec, project)
}

/// The newest snapshot named `name` in `all` (oldest first, as [`load_all`] returns):
/// the parent of the next snapshot of that source.
pub fn latest_of(all: &[(Id, Snapshot)], name: &str) -> Option<(Id, Snapshot)> {
    all.iter().rev().find(|(_, s)| s.name == name).cloned()
}

/// Whether the name a user typed names this snapshot's source: its source name, the
/// full name of the volume it was taken from (`code-buddy_qdrant-data`), or the
/// source name with the compose project prefix.
pub fn name_matches(snap: &Snapshot, typed: &str, project: Option<&str>) -> bool {
    if snap.name == typed {
        return true;
    }
    if snap.origin.pointer("/volume/name").and_then(|v| v.as_str()) == Some(typed) {
        return true;
    }
    if let Some(p) = project {
        if let Some(rest) = typed.strip_prefix(&format!("{p}_")) {
            return snap.name == rest;
        }
    }
    false
}

/// Resolve `NAME@SELECTOR` (or a bare snapshot id prefix) to one snapshot.
///
/// Selectors: `latest`, `latest~N`, an id prefix, `tag:T` (the newest snapshot tagged
/// `T`), or a date `YYYY-MM-DD` meaning the newest snapshot at or before the end of
/// that (local) day ([`date_note`] says when that is an earlier day). An unknown name
/// or selector yields an error listing what exists.
pub fn resolve(
    all: &[(Id, Snapshot)],
    spec: &str,
    project: Option<&str>,
) -> Result<(Id, Snapshot)> {
    let (name, sel) = match spec.rsplit_once('@') {
        Some((n, s)) => (n, s),
        None => {
            // A bare id prefix names one snapshot; a bare name means NAME@latest.
            if spec.len() >= 4 && spec.bytes().all(|b| b.is_ascii_hexdigit()) {
                let m: Vec<_> = all
                    .iter()
                    .filter(|(id, _)| id.to_hex().starts_with(spec))
                    .collect();
                if m.len() == 1 {
                    return Ok(m[0].clone());
                }
            }
            (spec, "latest")
        }
    };
    let mut cands: Vec<&(Id, Snapshot)> = all
        .iter()
        .filter(|(_, s)| name_matches(s, name, project))
        .collect();
    if cands.is_empty() {
        return Err(Error::NoSuchSnapshot(unknown_name(all, name)));
    }
    cands.sort_by_key(|c| std::cmp::Reverse(c.1.time));
    let pick = if sel == "latest" {
        cands.first().copied()
    } else if let Some(n) = sel.strip_prefix("latest~") {
        let n: usize = n.parse().map_err(|_| {
            Error::NoSuchSnapshot(format!(
                "`{sel}`: after `latest~` comes a number, as in `{name}@latest~1`"
            ))
        })?;
        cands.get(n).copied()
    } else if let Some(tag) = sel.strip_prefix("tag:") {
        cands
            .iter()
            .copied()
            .find(|(_, s)| s.tags.iter().any(|t| t == tag))
    } else if let Ok(day) = NaiveDate::parse_from_str(sel, "%Y-%m-%d") {
        let end = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0));
        let end = end.and_then(|e| Local.from_local_datetime(&e).earliest());
        end.and_then(|end| {
            let end = end.with_timezone(&Utc);
            cands.iter().copied().find(|(_, s)| s.time < end)
        })
    } else if sel.len() >= 4 && sel.bytes().all(|b| b.is_ascii_hexdigit()) {
        let m: Vec<_> = cands
            .iter()
            .copied()
            .filter(|(id, _)| id.to_hex().starts_with(&sel.to_ascii_lowercase()))
            .collect();
        if m.len() > 1 {
            return Err(Error::NoSuchSnapshot(format!(
                "`{sel}` matches {} snapshots of {name}; give more digits.\n{}",
                m.len(),
                listing(&m)
            )));
        }
        m.first().copied()
    } else {
        return Err(Error::NoSuchSnapshot(format!(
            "`{sel}` is not a selector. Use latest, latest~N, an id prefix (4+ hex digits), tag:T or a date YYYY-MM-DD.\nSnapshots of {name}:\n{}",
            listing(&cands)
        )));
    };
    pick.cloned().ok_or_else(|| {
        Error::NoSuchSnapshot(format!(
            "no snapshot of {name} matches `{sel}`. Snapshots of {name} (newest first):\n{}",
            listing(&cands)
        ))
    })
}

/// For a `NAME@YYYY-MM-DD` selector that resolved to `snap`: a note when the snapshot
/// is from an earlier (local) day than the one asked for, since the date selector
/// means "newest at or before the end of that day". `None` for other selectors or when
/// the snapshot is from that very day.
pub fn date_note(spec: &str, snap: &Snapshot) -> Option<String> {
    let (_, sel) = spec.rsplit_once('@')?;
    let day = NaiveDate::parse_from_str(sel, "%Y-%m-%d").ok()?;
    let taken = snap.time.with_timezone(&Local);
    (taken.date_naive() < day).then(|| {
        format!(
            "note: {} has no snapshot on {day}; `@{day}` means the newest at or before the end of that day, which is the one of {}",
            snap.name,
            taken.format("%Y-%m-%d %H:%M")
        )
    })
}

fn listing(c: &[&(Id, Snapshot)]) -> String {
    let mut s = String::new();
    for (i, (id, snap)) in c.iter().take(10).enumerate() {
        s.push_str(&format!(
            "  {}@latest~{i}  id {}  {}\n",
            snap.name,
            id.short(),
            snap.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S")
        ));
    }
    if c.len() > 10 {
        s.push_str(&format!(
            "  … and {} older (see `cbsnap snapshots`)\n",
            c.len() - 10
        ));
    }
    s
}

fn unknown_name(all: &[(Id, Snapshot)], name: &str) -> String {
    let mut names: Vec<&str> = all.iter().map(|(_, s)| s.name.as_str()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return format!("no snapshots named `{name}`: the repository has no snapshots yet");
    }
    let best = names
        .iter()
        .map(|n| (strsim::levenshtein(n, name), *n))
        .min()
        .filter(|(d, _)| *d <= 3);
    let mut msg = format!("no snapshots named `{name}`.");
    if let Some((_, n)) = best {
        msg.push_str(&format!(" Did you mean `{n}`?"));
    }
    msg.push_str("\nSources in this repository:\n");
    for n in names {
        let count = all.iter().filter(|(_, s)| s.name == n).count();
        msg.push_str(&format!("  {n} ({count} snapshots)\n"));
    }
    msg
}

/// The key of snapshot `id`: `snapshots/<64 hex digits>`.
pub fn snapshot_key(id: &Id) -> String {
    format!("snapshots/{}", id.to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str, t: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            kind: SourceKind::Path,
            origin: serde_json::json!({"path": "/x"}),
            hostname: "h".into(),
            time: DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc),
            tags: vec![],
            parent: None,
            run_id: None,
            run: None,
            consistency: None,
            tree: Id::hash(t.as_bytes()),
            root: RootMeta::default(),
            stats: SnapshotStats::default(),
            errors: vec![],
            excluded: vec![],
            cbsnap_version: "test".into(),
        }
    }

    fn repo() -> Vec<(Id, Snapshot)> {
        let v = [
            snap("qdrant-data", "2026-01-01T10:00:00Z"),
            snap("qdrant-data", "2026-01-02T10:00:00Z"),
            snap("qdrant-data", "2026-01-03T10:00:00Z"),
            snap("agent-state", "2026-01-03T11:00:00Z"),
        ];
        v.into_iter().map(|s| (Id::hash(&s.encode()), s)).collect()
    }

    #[test]
    fn selectors() {
        let all = repo();
        let t =
            |spec: &str| resolve(&all, spec, Some("code-buddy")).map(|(_, s)| s.time.to_rfc3339());
        assert_eq!(
            t("qdrant-data@latest").unwrap(),
            "2026-01-03T10:00:00+00:00"
        );
        assert_eq!(t("qdrant-data").unwrap(), "2026-01-03T10:00:00+00:00");
        assert_eq!(
            t("qdrant-data@latest~2").unwrap(),
            "2026-01-01T10:00:00+00:00"
        );
        assert_eq!(
            t("code-buddy_qdrant-data@latest~1").unwrap(),
            "2026-01-02T10:00:00+00:00"
        );
        assert!(t("qdrant-data@latest~3").is_err());
        let id = all[0].0.to_hex();
        assert_eq!(
            t(&format!("qdrant-data@{}", &id[..8])).unwrap(),
            "2026-01-01T10:00:00+00:00"
        );
        assert_eq!(t(&id[..10]).unwrap(), "2026-01-01T10:00:00+00:00");
    }

    #[test]
    fn unknown_name_suggests_and_lists() {
        let all = repo();
        let e = resolve(&all, "qdrant-dat@latest", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Did you mean `qdrant-data`"), "{e}");
        assert!(e.contains("agent-state (1 snapshots)"), "{e}");
        let e = resolve(&all, "qdrant-data@lates", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a selector") && e.contains("qdrant-data@latest~0"),
            "{e}"
        );
    }

    #[test]
    fn date_selector_takes_newest_at_or_before_that_day() {
        let all = repo();
        let (_, s) = resolve(&all, "qdrant-data@2026-01-02", None).unwrap();
        // Local time zone of the test machine may shift the day by at most one.
        assert!(s.time.to_rfc3339().starts_with("2026-01-0"));
        assert!(resolve(&all, "qdrant-data@2020-01-01", None).is_err());
    }

    #[test]
    fn date_note_only_for_an_earlier_day() {
        let all = repo();
        let (_, s) = resolve(&all, "qdrant-data@2026-01-20", None).unwrap();
        let note = date_note("qdrant-data@2026-01-20", &s).expect("an earlier day is noted");
        assert!(note.contains("no snapshot on 2026-01-20"), "{note}");
        assert!(note.contains("newest at or before"), "{note}");
        let same_day = s.time.with_timezone(&Local).format("%Y-%m-%d").to_string();
        assert_eq!(date_note(&format!("qdrant-data@{same_day}"), &s), None);
        assert_eq!(date_note("qdrant-data@latest", &s), None);
    }

    #[test]
    fn tag_selector_takes_the_newest_with_that_tag() {
        let mut all = repo();
        all[0].1.tags = vec!["before-upgrade".into()];
        all[1].1.tags = vec!["before-upgrade".into(), "x".into()];
        let (id, _) = resolve(&all, "qdrant-data@tag:before-upgrade", None).unwrap();
        assert_eq!(id, all[1].0);
        let e = resolve(&all, "qdrant-data@tag:nope", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no snapshot of qdrant-data matches `tag:nope`"),
            "{e}"
        );
        let e = resolve(&all, "agent-state@tag:before-upgrade", None);
        assert!(matches!(e, Err(Error::NoSuchSnapshot(_))));
    }
}
