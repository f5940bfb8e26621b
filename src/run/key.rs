//! The `cbsnap key` use cases: add a passphrase, remove one, change one. Each proves
//! knowledge of a current passphrase first (the master key must be unwrapped to wrap
//! it again), and removal happens under the repository's exclusive lock, so two
//! removals cannot race each other into a repository without keys.

use std::path::Path;

use crate::crypto::keys::{self, KdfParams, KeyInfo};
use crate::crypto::passphrase::PassphraseSource;
use crate::crypto::{CryptoError, MasterKey};
use crate::error::Result;
use crate::lock::{self, LockKind};
use crate::repo::{lock_wait, Repository};

/// Unwrap the master key of the encrypted repository at `root` with `current`.
fn unlock(
    root: &Path,
    current: &dyn PassphraseSource,
) -> Result<(crate::config::RepoConfig, MasterKey, String)> {
    let cfg = Repository::read_config(root)?;
    if !cfg.encrypted() {
        return Err(CryptoError::NotEncrypted(root.to_path_buf()).into());
    }
    let pass = current.passphrase()?;
    let (key, id) = keys::unlock(root, &cfg.id, &pass)?;
    Ok((cfg, key, id))
}

/// Add a key file for the passphrase `new`, after `current` opened the repository.
/// Returns the new key's id.
///
/// Errors: [`crate::Error::Crypto`] (wrong current passphrase, an empty new one, the
/// repository is not encrypted), [`crate::Error::Config`] and the like when `root` is
/// not a repository.
pub fn add(
    root: &Path,
    current: &dyn PassphraseSource,
    new: &dyn PassphraseSource,
) -> Result<String> {
    let (cfg, key, _) = unlock(root, current)?;
    let pass = new.passphrase()?;
    Ok(keys::add(
        root,
        &cfg.id,
        &key,
        &pass,
        &KdfParams::default(),
    )?)
}

/// Remove the key whose id starts with `prefix`. `current` must open the repository
/// with another key: the key in use is never removed (that is `passwd`), and neither
/// is the last one. Returns the removed key's id.
///
/// Errors: [`CryptoError::UnknownKey`], [`CryptoError::InUse`],
/// [`CryptoError::LastKey`], and those of [`add`].
pub fn remove(root: &Path, prefix: &str, current: &dyn PassphraseSource) -> Result<String> {
    let (_, _, used) = unlock(root, current)?;
    let id = keys::resolve(root, prefix)?;
    if id == used {
        return Err(CryptoError::InUse(id).into());
    }
    let storage: std::sync::Arc<dyn crate::storage::Storage> =
        std::sync::Arc::new(crate::storage::Local::new(root));
    let _lock = lock::acquire(&storage, LockKind::Exclusive, lock_wait())?;
    keys::remove(root, &id)?;
    Ok(id)
}

/// Change the passphrase: add a key file for `new`, then remove the one `current`
/// opened, in that order, so that a crash in between leaves both passphrases working
/// and never none. Returns (new key id, removed key id).
///
/// Errors: those of [`add`].
pub fn passwd(
    root: &Path,
    current: &dyn PassphraseSource,
    new: &dyn PassphraseSource,
) -> Result<(String, String)> {
    let (cfg, key, old) = unlock(root, current)?;
    let pass = new.passphrase()?;
    let storage: std::sync::Arc<dyn crate::storage::Storage> =
        std::sync::Arc::new(crate::storage::Local::new(root));
    let _lock = lock::acquire(&storage, LockKind::Exclusive, lock_wait())?;
    let added = keys::add(root, &cfg.id, &key, &pass, &KdfParams::default())?;
    keys::remove(root, &old)?;
    Ok((added, old))
}

/// The key files of the repository at `root` (no passphrase needed: nothing secret
/// is shown).
///
/// Errors: [`CryptoError::NotEncrypted`], and those of reading the config.
pub fn list(root: &Path) -> Result<Vec<KeyInfo>> {
    let cfg = Repository::read_config(root)?;
    if !cfg.encrypted() {
        return Err(CryptoError::NotEncrypted(root.to_path_buf()).into());
    }
    Ok(keys::list(root)?)
}
