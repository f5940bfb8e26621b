//! Encryption at rest: the repository's master key, the authenticated encryption of
//! every blob, pack trailer and snapshot file, and the keyed blob ids.
//!
//! An encrypted repository has one random [`MasterKey`] of two 32-byte halves: the
//! *encryption key* seals data with XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`; a random 24-byte nonce per sealed item is safe at any volume,
//! unlike AES-GCM's 12 bytes), and the *id key* turns BLAKE3 into a keyed hash
//! (`blake3::keyed_hash`), so a blob id says nothing about content to someone who
//! does not hold the key (restic uses a keyed MAC the same way; plain content hashes
//! would let anyone confirm that a repository holds a known file). The master key is
//! stored only wrapped by passphrases in key files (`keys/`, see [`keys`]), so a
//! passphrase can be added, changed and removed without rewriting any data.
//!
//! Sealed layout: `nonce[24] || ciphertext || tag[16]`, [`OVERHEAD`] bytes longer than
//! the plaintext, with associated data naming what is sealed ([`Purpose`]) so that a
//! blob cannot be passed off as a trailer or a snapshot. `docs/FORMAT.md` describes
//! every byte.

pub mod keys;
pub mod passphrase;

use std::path::PathBuf;
use std::sync::Arc;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::id::Id;

/// Bytes of the random nonce in front of every sealed item.
pub const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag behind every sealed item.
pub const TAG_LEN: usize = 16;
/// How much longer a sealed item is than its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why encryption or a key operation failed. Every variant says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The passphrase opens none of the key files.
    #[error("wrong passphrase: it opens none of the {tried} key file(s) in {}. Check CBSNAP_PASSWORD, CBSNAP_PASSWORD_FILE or CBSNAP_PASSWORD_COMMAND (or what you typed)", .dir.display())]
    WrongPassphrase { dir: PathBuf, tried: usize },
    /// An encrypted repository without any key file: its data cannot be read.
    #[error("the repository is encrypted but {} holds no key file; copy `keys/` back from a mirror or a copy of the repository", .0.display())]
    NoKeys(PathBuf),
    /// The repository is encrypted and no passphrase source is set.
    #[error("the repository is encrypted and no passphrase was given: set CBSNAP_PASSWORD, CBSNAP_PASSWORD_FILE (a file holding it) or CBSNAP_PASSWORD_COMMAND (a command printing it), or run cbsnap on a terminal to be asked")]
    NoPassphrase,
    /// `CBSNAP_PASSWORD_FILE` (or `--new-password-file`) could not be read.
    #[error("cannot read the passphrase file {}: {source}", .path.display())]
    PassphraseFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `CBSNAP_PASSWORD_COMMAND` could not run or failed.
    #[error("the passphrase command `{command}` {why}; fix CBSNAP_PASSWORD_COMMAND")]
    PassphraseCommand { command: String, why: String },
    /// The passphrase is empty (an empty file, a command that printed nothing).
    #[error("the passphrase from {0} is empty; an empty passphrase is not accepted")]
    EmptyPassphrase(String),
    /// A terminal prompt failed.
    #[error("cannot read the passphrase from the terminal: {0}")]
    Prompt(#[source] std::io::Error),
    /// The two passphrases typed at a new-passphrase prompt differ.
    #[error("the passphrases do not match; nothing was changed")]
    Mismatch,
    /// A key file that cannot be parsed or whose parameters are impossible.
    #[error("key file {} is damaged: {why}. Remove it with `cbsnap key remove` if another key opens the repository", .path.display())]
    KeyFile { path: PathBuf, why: String },
    /// `key remove` of the only key: the repository would become unreadable.
    #[error("{0} is the repository's only key; removing it would make every snapshot unreadable. Add another first (`cbsnap key add`)")]
    LastKey(String),
    /// `key remove` of the key whose passphrase was given.
    #[error("key {0} is the one your passphrase opened; to change that passphrase use `cbsnap key passwd`, or give another key's passphrase to remove this one")]
    InUse(String),
    /// A new passphrase is needed and no source of it is set.
    #[error("a new passphrase is needed: set CBSNAP_NEW_PASSWORD, CBSNAP_NEW_PASSWORD_FILE or CBSNAP_NEW_PASSWORD_COMMAND, or run cbsnap on a terminal to be asked")]
    NoNewPassphrase,

    /// `key remove` of an id no key file has (or a prefix several have).
    #[error("no single key file matches `{0}`; `cbsnap key list` shows the ids")]
    UnknownKey(String),
    /// The command needs an encrypted repository.
    #[error("the repository at {} is not encrypted, so it has no keys; encryption is chosen at `cbsnap init --encryption on`", .0.display())]
    NotEncrypted(PathBuf),
    /// The operating system gave no random bytes.
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
    /// A sealed item whose tag does not verify: damaged, or not sealed with this key.
    #[error(transparent)]
    Authentication(#[from] AuthError),
    /// The repository's storage refused a key file operation (read, write, list, remove).
    #[error("cannot {context}: {source}")]
    Storage {
        context: &'static str,
        #[source]
        source: crate::storage::StorageError,
    },
    /// A key file could not be written or removed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// A sealed item failed authentication: its bytes were changed (a flipped bit, a
/// truncation) or it was not sealed with this repository's key. Callers add which
/// pack, blob or file it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed (the data was changed after it was written, or was not written with this repository's key)")]
pub struct AuthError;

/// What a sealed item is, bound into its tag as associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A blob's stored bytes in a pack.
    Blob,
    /// A pack trailer.
    Trailer,
    /// A snapshot file's body.
    Snapshot,
    /// The master key in a key file (the associated data also holds the repository id).
    KeyFile,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::Blob => b"cbsnap blob",
            Purpose::Trailer => b"cbsnap pack trailer",
            Purpose::Snapshot => b"cbsnap snapshot",
            Purpose::KeyFile => b"cbsnap key",
        }
    }
}

/// `n` random bytes from the operating system.
pub fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| CryptoError::Random(e.to_string()))?;
    Ok(b)
}

/// Seal `plain` in place with `key`: returns `nonce || ciphertext || tag`.
fn seal_with(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[NONCE_LEN..])
        .map_err(|_| CryptoError::Random("the cipher refused the input length".into()))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Open `nonce || ciphertext || tag` sealed with `key`, in place.
fn open_with(key: &[u8; 32], aad: &[u8], mut sealed: Vec<u8>) -> Result<Vec<u8>, AuthError> {
    if sealed.len() < OVERHEAD {
        return Err(AuthError);
    }
    let tag_at = sealed.len() - TAG_LEN;
    let tag = *Tag::from_slice(&sealed[tag_at..]);
    let nonce = *XNonce::from_slice(&sealed[..NONCE_LEN]);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt_in_place_detached(&nonce, aad, &mut sealed[NONCE_LEN..tag_at], &tag)
        .map_err(|_| AuthError)?;
    sealed.truncate(tag_at);
    sealed.drain(..NONCE_LEN);
    Ok(sealed)
}

/// The repository's secret: the encryption key and the id key (32 bytes each). Both
/// are wiped from memory when dropped.
pub struct MasterKey {
    enc: Zeroizing<[u8; 32]>,
    id: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    /// A new random master key (at `init`).
    pub fn generate() -> Result<MasterKey, CryptoError> {
        Ok(MasterKey {
            enc: Zeroizing::new(random()?),
            id: Zeroizing::new(random()?),
        })
    }

    /// `enc || id`, the 64 bytes a key file wraps.
    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(64));
        v.extend_from_slice(&self.enc[..]);
        v.extend_from_slice(&self.id[..]);
        v
    }

    fn from_bytes(b: &[u8]) -> Option<MasterKey> {
        if b.len() != 64 {
            return None;
        }
        let mut enc = Zeroizing::new([0u8; 32]);
        let mut id = Zeroizing::new([0u8; 32]);
        enc.copy_from_slice(&b[..32]);
        id.copy_from_slice(&b[32..]);
        Some(MasterKey { enc, id })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// How a repository names and protects its data: [`Crypt::Plain`] for an unencrypted
/// repository (plain BLAKE3 ids, bytes stored as they are), [`Crypt::Sealed`] for an
/// encrypted one. Cheap to clone; every stage of the pipeline holds one.
#[derive(Clone, Debug, Default)]
pub enum Crypt {
    #[default]
    Plain,
    Sealed(Arc<MasterKey>),
}

impl Crypt {
    /// Whether data is sealed.
    pub fn is_encrypted(&self) -> bool {
        matches!(self, Crypt::Sealed(_))
    }

    /// The id of a blob's raw bytes: BLAKE3, keyed with the id key when encrypted.
    pub fn id(&self, raw: &[u8]) -> Id {
        match self {
            Crypt::Plain => Id::hash(raw),
            Crypt::Sealed(k) => Id(*blake3::keyed_hash(&k.id, raw).as_bytes()),
        }
    }

    /// Seal `plain` for `purpose` (`nonce || ciphertext || tag`); unencrypted: `plain`
    /// unchanged.
    ///
    /// Errors: [`CryptoError::Random`] when the OS has no random bytes for the nonce.
    pub fn seal(&self, purpose: Purpose, plain: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        match self {
            Crypt::Plain => Ok(plain),
            Crypt::Sealed(k) => seal_with(&k.enc, purpose.aad(), &plain),
        }
    }

    /// Open what [`Crypt::seal`] made for the same `purpose`; unencrypted: the bytes
    /// unchanged.
    ///
    /// Errors: [`AuthError`] when the bytes were changed or sealed with another key.
    pub fn open(&self, purpose: Purpose, sealed: Vec<u8>) -> Result<Vec<u8>, AuthError> {
        match self {
            Crypt::Plain => Ok(sealed),
            Crypt::Sealed(k) => open_with(&k.enc, purpose.aad(), sealed),
        }
    }

    /// How many bytes sealing adds: [`OVERHEAD`] when encrypted, else 0.
    pub fn overhead(&self) -> usize {
        if self.is_encrypted() {
            OVERHEAD
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Crypt {
        Crypt::Sealed(Arc::new(MasterKey::generate().unwrap()))
    }

    #[test]
    fn seal_open_round_trip_and_fresh_nonces() {
        let c = sealed();
        let a = c.seal(Purpose::Blob, b"hello world".to_vec()).unwrap();
        let b = c.seal(Purpose::Blob, b"hello world".to_vec()).unwrap();
        assert_eq!(a.len(), 11 + OVERHEAD);
        assert_ne!(a, b, "every seal draws a new nonce");
        assert!(!a.windows(5).any(|w| w == b"hello"));
        assert_eq!(c.open(Purpose::Blob, a).unwrap(), b"hello world");
        assert_eq!(
            c.open(Purpose::Blob, c.seal(Purpose::Blob, vec![]).unwrap())
                .unwrap(),
            b""
        );
    }

    #[test]
    fn any_changed_byte_fails_authentication() {
        let c = sealed();
        let s = c.seal(Purpose::Trailer, vec![7u8; 100]).unwrap();
        for i in [0, NONCE_LEN, 50, s.len() - 1] {
            let mut bad = s.clone();
            bad[i] ^= 1;
            assert_eq!(c.open(Purpose::Trailer, bad), Err(AuthError), "byte {i}");
        }
        assert_eq!(
            c.open(Purpose::Trailer, s[..OVERHEAD - 1].to_vec()),
            Err(AuthError)
        );
        // Another purpose, another key: refused.
        assert_eq!(c.open(Purpose::Blob, s.clone()), Err(AuthError));
        assert_eq!(sealed().open(Purpose::Trailer, s), Err(AuthError));
    }

    #[test]
    fn keyed_ids_differ_from_plain_and_between_keys() {
        let (a, b) = (sealed(), sealed());
        let data = b"some chunk";
        assert_eq!(Crypt::Plain.id(data), Id::hash(data));
        assert_ne!(a.id(data), Id::hash(data));
        assert_ne!(a.id(data), b.id(data));
        assert_eq!(a.id(data), a.id(data));
        assert_eq!(
            Crypt::Plain.seal(Purpose::Blob, data.to_vec()).unwrap(),
            data
        );
    }
}
