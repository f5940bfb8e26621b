//! Key files: the master key wrapped by a passphrase, one file per passphrase under
//! `keys/<key id>` (restic's `keys/` design). A passphrase is stretched with Argon2id
//! (RFC 9106; RustCrypto's `argon2`) into a 32-byte key-encryption key that seals the
//! 64-byte master key with XChaCha20-Poly1305. Adding, changing or removing a
//! passphrase writes or deletes one small file and never touches the data.
//!
//! ```json
//! {"format": "cbsnap-key", "version": 1, "created": "<RFC 3339>", "host": "<name>",
//!  "kdf": {"algorithm": "argon2id", "version": 19, "memory_kib": 65536, "iterations": 3, "parallelism": 1},
//!  "salt": "<hex, 32 bytes>", "cipher": "xchacha20-poly1305",
//!  "nonce": "<hex, 24 bytes>", "wrapped": "<hex, 64-byte master key sealed: 80 bytes>"}
//! ```
//!
//! The associated data of the wrapped key is `"cbsnap key" || repository id[32]`, so a
//! key file only opens the repository it was made for.

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{open_with, random, seal_with, CryptoError, MasterKey, Purpose, NONCE_LEN};
use crate::id::Id;
use crate::storage::{self, Storage, StorageError};

/// The directory of key files, relative to the repository root.
pub const KEYS_DIR: &str = "keys";
/// The `format` field of every key file.
pub const FORMAT: &str = "cbsnap-key";
/// The key file version this build writes and reads.
pub const VERSION: u32 = 1;
/// The only cipher a key file names.
pub const CIPHER: &str = "xchacha20-poly1305";

/// Argon2id parameters, stored in each key file so that they can be raised later
/// without breaking old files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Always `"argon2id"`.
    pub algorithm: String,
    /// Argon2 version: 19 (0x13).
    pub version: u32,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's second recommended option, about a
    /// quarter of a second per unlock on one core of the project's machine.
    fn default() -> Self {
        KdfParams {
            algorithm: "argon2id".into(),
            version: 19,
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Stretch `passphrase` with `salt` into a 32-byte key.
    ///
    /// Errors: [`CryptoError::KeyFile`] (naming `path`) when the parameters are not
    /// ones Argon2id accepts or are absurd (more than 4 GiB of memory).
    fn derive(
        &self,
        passphrase: &str,
        salt: &[u8],
        path: &Path,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let bad = |why: String| CryptoError::KeyFile {
            path: path.to_path_buf(),
            why,
        };
        if self.algorithm != "argon2id" || self.version != 19 {
            return Err(bad(format!(
                "unknown key derivation {} version {}",
                self.algorithm, self.version
            )));
        }
        if self.memory_kib > 4 * 1024 * 1024 || self.iterations > 64 || self.parallelism > 64 {
            return Err(bad("its Argon2id parameters are out of range".into()));
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| bad(format!("Argon2id parameters: {e}")))?;
        let mut out = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), salt, &mut out[..])
            .map_err(|e| bad(format!("Argon2id: {e}")))?;
        Ok(out)
    }
}

/// The JSON of one key file.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeyFile {
    format: String,
    version: u32,
    created: String,
    host: String,
    kdf: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    wrapped: String,
}

/// What `cbsnap key list` shows of a key file (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The file name under `keys/`: 64 hex digits.
    pub id: String,
    /// When it was added (RFC 3339).
    pub created: String,
    /// The host it was added on.
    pub host: String,
    /// Its Argon2id memory in KiB.
    pub memory_kib: u32,
}

/// The key of key file `id` in the repository's storage: `keys/<id>`.
fn key_of(id: &str) -> String {
    format!("{KEYS_DIR}/{id}")
}

/// Where the key files are, for messages: `<repo>/keys`.
fn keys_dir(storage: &dyn Storage) -> PathBuf {
    storage::display_path(storage, KEYS_DIR)
}

fn aad(repo_id: &Id) -> Vec<u8> {
    let mut a = Purpose::KeyFile.aad().to_vec();
    a.extend_from_slice(&repo_id.0);
    a
}

fn stored(context: &'static str) -> impl FnOnce(StorageError) -> CryptoError {
    move |source| CryptoError::Storage { context, source }
}

/// Wrap `key` with `passphrase` into a new key file `keys/<random id>` of the
/// repository in `storage` (written atomically: [`Storage::write`]). Returns the new
/// key's id.
///
/// Errors: [`CryptoError::EmptyPassphrase`], [`CryptoError::Random`],
/// [`CryptoError::Storage`].
pub fn add(
    storage: &dyn Storage,
    repo_id: &Id,
    key: &MasterKey,
    passphrase: &str,
    kdf: &KdfParams,
) -> Result<String, CryptoError> {
    if passphrase.is_empty() {
        return Err(CryptoError::EmptyPassphrase("the new passphrase".into()));
    }
    let salt: [u8; 32] = random()?;
    let id = hex::encode(random::<32>()?);
    let path = storage::display_path(storage, &key_of(&id));
    let kek = kdf.derive(passphrase, &salt, &path)?;
    let sealed = seal_with(&kek, &aad(repo_id), &key.to_bytes())?;
    let file = KeyFile {
        format: FORMAT.into(),
        version: VERSION,
        created: chrono::Utc::now().to_rfc3339(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        kdf: kdf.clone(),
        salt: hex::encode(salt),
        cipher: CIPHER.into(),
        nonce: hex::encode(&sealed[..NONCE_LEN]),
        wrapped: hex::encode(&sealed[NONCE_LEN..]),
    };
    let json = serde_json::to_vec_pretty(&file).expect("key file serializes");
    storage
        .write(&key_of(&id), &json)
        .map_err(stored("write a key file"))?;
    Ok(id)
}

/// Every key file name under `keys/` (sorted); temp files are skipped.
fn key_ids(storage: &dyn Storage) -> Result<Vec<String>, CryptoError> {
    let listed = storage
        .list(&format!("{KEYS_DIR}/"))
        .map_err(stored("list the key files"))?;
    let mut ids: Vec<String> = listed
        .into_iter()
        .filter_map(|l| {
            let name = l.key.strip_prefix(KEYS_DIR)?.strip_prefix('/')?;
            (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| name.to_string())
        })
        .collect();
    ids.sort();
    Ok(ids)
}

fn read(storage: &dyn Storage, id: &str) -> Result<(PathBuf, KeyFile), CryptoError> {
    let path = storage::display_path(storage, &key_of(id));
    let bytes = storage
        .read(&key_of(id))
        .map_err(stored("read a key file"))?;
    let bad = |why: String| CryptoError::KeyFile {
        path: path.clone(),
        why,
    };
    let f: KeyFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if f.format != FORMAT {
        return Err(bad(format!("format {:?} is not {FORMAT:?}", f.format)));
    }
    if f.version != VERSION {
        return Err(bad(format!(
            "key file version {} is not supported; upgrade cbsnap",
            f.version
        )));
    }
    if f.cipher != CIPHER {
        return Err(bad(format!("unknown cipher {:?}", f.cipher)));
    }
    Ok((path, f))
}

/// Unwrap the master key with `passphrase`, trying each key file in turn. Returns the
/// key and the id of the key file that opened it.
///
/// Errors: [`CryptoError::NoKeys`], [`CryptoError::WrongPassphrase`] (no key file
/// opens with it), [`CryptoError::KeyFile`] when no file opens and one was damaged.
pub fn unlock(
    storage: &dyn Storage,
    repo_id: &Id,
    passphrase: &str,
) -> Result<(MasterKey, String), CryptoError> {
    let ids = key_ids(storage)?;
    if ids.is_empty() {
        return Err(CryptoError::NoKeys(keys_dir(storage)));
    }
    let mut damaged = None;
    for id in &ids {
        let (path, f) = match read(storage, id) {
            Ok(x) => x,
            Err(e) => {
                damaged.get_or_insert(e);
                continue;
            }
        };
        let (Ok(salt), Ok(nonce), Ok(wrapped)) = (
            hex::decode(&f.salt),
            hex::decode(&f.nonce),
            hex::decode(&f.wrapped),
        ) else {
            damaged.get_or_insert(CryptoError::KeyFile {
                path,
                why: "salt, nonce or wrapped key is not hex".into(),
            });
            continue;
        };
        if nonce.len() != NONCE_LEN {
            damaged.get_or_insert(CryptoError::KeyFile {
                path,
                why: "the nonce is not 24 bytes".into(),
            });
            continue;
        }
        let kek = f.kdf.derive(passphrase, &salt, &path)?;
        let sealed = [nonce, wrapped].concat();
        if let Ok(plain) = open_with(&kek, &aad(repo_id), sealed) {
            let plain = Zeroizing::new(plain);
            let key = MasterKey::from_bytes(&plain).ok_or_else(|| CryptoError::KeyFile {
                path: path.clone(),
                why: "the wrapped key is not 64 bytes".into(),
            })?;
            return Ok((key, id.clone()));
        }
    }
    Err(damaged.unwrap_or(CryptoError::WrongPassphrase {
        dir: keys_dir(storage),
        tried: ids.len(),
    }))
}

/// Every key file, with what `key list` shows. Damaged files are listed with what
/// could be read (their id).
///
/// Errors: [`CryptoError::Storage`] when `keys/` cannot be listed.
pub fn list(storage: &dyn Storage) -> Result<Vec<KeyInfo>, CryptoError> {
    let mut out = Vec::new();
    for id in key_ids(storage)? {
        out.push(match read(storage, &id) {
            Ok((_, f)) => KeyInfo {
                id,
                created: f.created,
                host: f.host,
                memory_kib: f.kdf.memory_kib,
            },
            Err(e) => KeyInfo {
                id,
                created: String::new(),
                host: format!("(unreadable: {e})"),
                memory_kib: 0,
            },
        });
    }
    Ok(out)
}

/// The one key id that starts with `prefix`.
///
/// Errors: [`CryptoError::UnknownKey`] when none or several match.
pub fn resolve(storage: &dyn Storage, prefix: &str) -> Result<String, CryptoError> {
    let p = prefix.to_ascii_lowercase();
    let matching: Vec<String> = key_ids(storage)?
        .into_iter()
        .filter(|id| !p.is_empty() && id.starts_with(&p))
        .collect();
    match <[String; 1]>::try_from(matching) {
        Ok([id]) => Ok(id),
        Err(_) => Err(CryptoError::UnknownKey(prefix.to_string())),
    }
}

/// Delete key file `id` (a full id from [`resolve`]), unless it is the only one.
/// Durable once it returns ([`Storage::delete`]: a path backend fsyncs the directory),
/// so a removed passphrase stays removed after a crash.
///
/// Errors: [`CryptoError::LastKey`], [`CryptoError::UnknownKey`],
/// [`CryptoError::Storage`].
pub fn remove(storage: &dyn Storage, id: &str) -> Result<(), CryptoError> {
    let ids = key_ids(storage)?;
    if !ids.iter().any(|k| k == id) {
        return Err(CryptoError::UnknownKey(id.to_string()));
    }
    if ids.len() == 1 {
        return Err(CryptoError::LastKey(id.to_string()));
    }
    storage
        .delete(&key_of(id))
        .map_err(stored("remove a key file"))?;
    if let Some(root) = storage.local_root() {
        let dir = root.join(KEYS_DIR);
        crate::fsutil::fsync_dir(&dir).map_err(|source| CryptoError::Io {
            context: format!("fsync {}", dir.display()),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small parameters: the tests check the wrapping, not Argon2's cost.
    fn cheap() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..KdfParams::default()
        }
    }

    #[test]
    fn add_unlock_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let d = crate::storage::Local::new(tmp.path());
        let repo = Id::hash(b"repo");
        let key = MasterKey::generate().unwrap();
        let first = add(&d, &repo, &key, "one", &cheap()).unwrap();
        let (k, by) = unlock(&d, &repo, "one").unwrap();
        assert_eq!(by, first);
        assert_eq!(k.to_bytes(), key.to_bytes());
        assert!(matches!(
            unlock(&d, &repo, "two"),
            Err(CryptoError::WrongPassphrase { tried: 1, .. })
        ));
        // Bound to its repository.
        assert!(matches!(
            unlock(&d, &Id::hash(b"other"), "one"),
            Err(CryptoError::WrongPassphrase { .. })
        ));
        assert!(matches!(remove(&d, &first), Err(CryptoError::LastKey(_))));
        let second = add(&d, &repo, &key, "two", &cheap()).unwrap();
        assert_eq!(resolve(&d, &second[..8]).unwrap(), second);
        remove(&d, &first).unwrap();
        assert_eq!(unlock(&d, &repo, "two").unwrap().1, second);
        assert!(unlock(&d, &repo, "one").is_err());
        assert_eq!(list(&d).unwrap().len(), 1);
        assert!(matches!(
            add(&d, &repo, &key, "", &cheap()),
            Err(CryptoError::EmptyPassphrase(_))
        ));
    }

    #[test]
    fn no_keys_and_damaged_keys_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = crate::storage::Local::new(tmp.path());
        let repo = Id::hash(b"repo");
        assert!(matches!(
            unlock(&d, &repo, "x"),
            Err(CryptoError::NoKeys(_))
        ));
        std::fs::create_dir_all(tmp.path().join(KEYS_DIR)).unwrap();
        std::fs::write(tmp.path().join(KEYS_DIR).join("ab".repeat(32)), b"{").unwrap();
        assert!(matches!(
            unlock(&d, &repo, "x"),
            Err(CryptoError::KeyFile { .. })
        ));
    }
}
