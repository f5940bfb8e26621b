//! The `cbsnap key` use cases: add a passphrase, remove one, change one. Each proves
//! knowledge of a current passphrase first (the master key must be unwrapped to wrap
//! it again), and removal happens under the repository's exclusive lock, so two
//! removals cannot race each other into a repository without keys. Key files live in
//! the repository's storage (`keys/<id>`), so these work on every backend.

use std::sync::Arc;

use crate::crypto::keys::{self, KdfParams, KeyInfo};
use crate::crypto::passphrase::PassphraseSource;
use crate::crypto::{CryptoError, MasterKey};
use crate::error::Result;
use crate::lock::{self, LockKind};
use crate::repo::{lock_wait, Repository};
use crate::storage::{self, Storage};

/// The config of the repository in `storage`, which must be encrypted.
fn encrypted_config(storage: &dyn Storage) -> Result<crate::config::RepoConfig> {
    let cfg = Repository::read_config_in(storage)?;
    if !cfg.encrypted() {
        let here = storage::display_path(storage, "");
        return Err(CryptoError::NotEncrypted(here.components().collect()).into());
    }
    Ok(cfg)
}

/// Unwrap the master key of the encrypted repository in `storage` with `current`.
fn unlock(
    storage: &dyn Storage,
    current: &dyn PassphraseSource,
) -> Result<(crate::config::RepoConfig, MasterKey, String)> {
    let cfg = encrypted_config(storage)?;
    let pass = current.passphrase()?;
    let (key, id) = keys::unlock(storage, &cfg.id, &pass)?;
    Ok((cfg, key, id))
}

/// Add a key file for the passphrase `new`, after `current` opened the repository.
/// Returns the new key's id.
///
/// Errors: [`crate::Error::Crypto`] (wrong current passphrase, an empty new one, the
/// repository is not encrypted), [`crate::Error::NotARepository`] and the like when
/// `storage` holds no repository.
pub fn add(
    storage: &Arc<dyn Storage>,
    current: &dyn PassphraseSource,
    new: &dyn PassphraseSource,
) -> Result<String> {
    let (cfg, key, _) = unlock(&**storage, current)?;
    let pass = new.passphrase()?;
    Ok(keys::add(
        &**storage,
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
pub fn remove(
    storage: &Arc<dyn Storage>,
    prefix: &str,
    current: &dyn PassphraseSource,
) -> Result<String> {
    let (_, _, used) = unlock(&**storage, current)?;
    let id = keys::resolve(&**storage, prefix)?;
    if id == used {
        return Err(CryptoError::InUse(id).into());
    }
    let _lock = lock::acquire(storage, LockKind::Exclusive, lock_wait())?;
    keys::remove(&**storage, &id)?;
    Ok(id)
}

/// Change the passphrase: add a key file for `new`, then remove the one `current`
/// opened, in that order, so that a crash in between leaves both passphrases working
/// and never none. Returns (new key id, removed key id).
///
/// Errors: those of [`add`].
pub fn passwd(
    storage: &Arc<dyn Storage>,
    current: &dyn PassphraseSource,
    new: &dyn PassphraseSource,
) -> Result<(String, String)> {
    let (cfg, key, old) = unlock(&**storage, current)?;
    let pass = new.passphrase()?;
    let _lock = lock::acquire(storage, LockKind::Exclusive, lock_wait())?;
    let added = keys::add(&**storage, &cfg.id, &key, &pass, &KdfParams::default())?;
    keys::remove(&**storage, &old)?;
    Ok((added, old))
}

/// The key files of the repository in `storage` (no passphrase needed: nothing
/// secret is shown).
///
/// Errors: [`CryptoError::NotEncrypted`], and those of reading the config.
pub fn list(storage: &dyn Storage) -> Result<Vec<KeyInfo>> {
    encrypted_config(storage)?;
    Ok(keys::list(storage)?)
}
