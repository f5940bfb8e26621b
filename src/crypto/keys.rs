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

use std::fs;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{open_with, random, seal_with, CryptoError, MasterKey, Purpose, NONCE_LEN};
use crate::fsutil;
use crate::id::Id;

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

fn keys_dir(root: &Path) -> PathBuf {
    root.join(KEYS_DIR)
}

fn aad(repo_id: &Id) -> Vec<u8> {
    let mut a = Purpose::KeyFile.aad().to_vec();
    a.extend_from_slice(&repo_id.0);
    a
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> CryptoError {
    move |source| CryptoError::Io { context, source }
}

/// Wrap `key` with `passphrase` into a new key file `keys/<random id>` of the
/// repository at `root` (written atomically: temp name, fsync, rename). Returns the
/// new key's id.
///
/// Errors: [`CryptoError::EmptyPassphrase`], [`CryptoError::Random`],
/// [`CryptoError::Io`].
pub fn add(
    root: &Path,
    repo_id: &Id,
    key: &MasterKey,
    passphrase: &str,
    kdf: &KdfParams,
) -> Result<String, CryptoError> {
    if passphrase.is_empty() {
        return Err(CryptoError::EmptyPassphrase("the new passphrase".into()));
    }
    let dir = keys_dir(root);
    fsutil::create_private_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
    let salt: [u8; 32] = random()?;
    let id = hex::encode(random::<32>()?);
    let path = dir.join(&id);
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
    fsutil::write_atomic(&path, &json).map_err(io(format!("write {}", path.display())))?;
    Ok(id)
}

/// Every key file name under `keys/` (sorted); temp files are skipped.
fn key_ids(root: &Path) -> Result<Vec<String>, CryptoError> {
    let dir = keys_dir(root);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("read {}", dir.display()))(e)),
    };
    let mut ids = Vec::new();
    for e in rd {
        let e = e.map_err(io(format!("read {}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

fn read(root: &Path, id: &str) -> Result<(PathBuf, KeyFile), CryptoError> {
    let path = keys_dir(root).join(id);
    let bytes = fs::read(&path).map_err(io(format!("read {}", path.display())))?;
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
    root: &Path,
    repo_id: &Id,
    passphrase: &str,
) -> Result<(MasterKey, String), CryptoError> {
    let ids = key_ids(root)?;
    if ids.is_empty() {
        return Err(CryptoError::NoKeys(keys_dir(root)));
    }
    let mut damaged = None;
    for id in &ids {
        let (path, f) = match read(root, id) {
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
        dir: keys_dir(root),
        tried: ids.len(),
    }))
}

/// Every key file, with what `key list` shows. Damaged files are listed with what
/// could be read (their id).
///
/// Errors: [`CryptoError::Io`] when `keys/` cannot be listed.
pub fn list(root: &Path) -> Result<Vec<KeyInfo>, CryptoError> {
    let mut out = Vec::new();
    for id in key_ids(root)? {
        out.push(match read(root, &id) {
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
pub fn resolve(root: &Path, prefix: &str) -> Result<String, CryptoError> {
    let p = prefix.to_ascii_lowercase();
    let matching: Vec<String> = key_ids(root)?
        .into_iter()
        .filter(|id| !p.is_empty() && id.starts_with(&p))
        .collect();
    match <[String; 1]>::try_from(matching) {
        Ok([id]) => Ok(id),
        Err(_) => Err(CryptoError::UnknownKey(prefix.to_string())),
    }
}

/// Delete key file `id` (a full id from [`resolve`]), unless it is the only one.
/// The directory is fsynced, so a removed passphrase stays removed after a crash.
///
/// Errors: [`CryptoError::LastKey`], [`CryptoError::UnknownKey`], [`CryptoError::Io`].
pub fn remove(root: &Path, id: &str) -> Result<(), CryptoError> {
    let ids = key_ids(root)?;
    if !ids.iter().any(|k| k == id) {
        return Err(CryptoError::UnknownKey(id.to_string()));
    }
    if ids.len() == 1 {
        return Err(CryptoError::LastKey(id.to_string()));
    }
    let dir = keys_dir(root);
    let path = dir.join(id);
    fs::remove_file(&path).map_err(io(format!("remove {}", path.display())))?;
    fsutil::fsync_dir(&dir).map_err(io(format!("fsync {}", dir.display())))
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
        let d = tempfile::tempdir().unwrap();
        let repo = Id::hash(b"repo");
        let key = MasterKey::generate().unwrap();
        let first = add(d.path(), &repo, &key, "one", &cheap()).unwrap();
        let (k, by) = unlock(d.path(), &repo, "one").unwrap();
        assert_eq!(by, first);
        assert_eq!(k.to_bytes(), key.to_bytes());
        assert!(matches!(
            unlock(d.path(), &repo, "two"),
            Err(CryptoError::WrongPassphrase { tried: 1, .. })
        ));
        // Bound to its repository.
        assert!(matches!(
            unlock(d.path(), &Id::hash(b"other"), "one"),
            Err(CryptoError::WrongPassphrase { .. })
        ));
        assert!(matches!(
            remove(d.path(), &first),
            Err(CryptoError::LastKey(_))
        ));
        let second = add(d.path(), &repo, &key, "two", &cheap()).unwrap();
        assert_eq!(resolve(d.path(), &second[..8]).unwrap(), second);
        remove(d.path(), &first).unwrap();
        assert_eq!(unlock(d.path(), &repo, "two").unwrap().1, second);
        assert!(unlock(d.path(), &repo, "one").is_err());
        assert_eq!(list(d.path()).unwrap().len(), 1);
        assert!(matches!(
            add(d.path(), &repo, &key, "", &cheap()),
            Err(CryptoError::EmptyPassphrase(_))
        ));
    }

    #[test]
    fn no_keys_and_damaged_keys_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let repo = Id::hash(b"repo");
        assert!(matches!(
            unlock(d.path(), &repo, "x"),
            Err(CryptoError::NoKeys(_))
        ));
        fs::create_dir_all(d.path().join(KEYS_DIR)).unwrap();
        fs::write(d.path().join(KEYS_DIR).join("ab".repeat(32)), b"{").unwrap();
        assert!(matches!(
            unlock(d.path(), &repo, "x"),
            Err(CryptoError::KeyFile { .. })
        ));
    }
}
