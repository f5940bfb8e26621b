//! The repository's `config` file: format version, repository id and the parameters
//! that must stay fixed for the life of a repository (changing the chunker would
//! silently break deduplication against every existing snapshot).
//!
//! Layout (version 2): `"CBSNAPCF"` || u32 LE version || UTF-8 JSON of [`RepoConfig`]
//! || `"\n"` || BLAKE3 of every byte before it (32 bytes). The checksum is what makes
//! a flipped digit in `chunker.avg_size` an error instead of a silent loss of
//! deduplication (issue 7, case 13). Version 1 (no checksum) is still read.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::id::Id;

pub const MAGIC: &[u8; 8] = b"CBSNAPCF";
/// The newest repository format version this build writes (an encrypted repository).
/// Readers accept 1..=FORMAT_VERSION.
pub const FORMAT_VERSION: u32 = 3;

/// The first version whose config may say the repository is encrypted: the version of
/// a new encrypted repository.
pub const ENCRYPTION_SINCE: u32 = 3;

/// The version of a new unencrypted repository: its layout is unchanged by version 3,
/// so it stays readable by the cbsnap builds that read version 2.
pub const UNENCRYPTED_VERSION: u32 = 2;

/// The first version whose config ends with a BLAKE3 checksum of the bytes before it.
pub const CHECKSUM_SINCE: u32 = 2;

/// Why a `config` file was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file does not start with the config magic.
    #[error("{0}")]
    Header(#[from] codec::DecodeError),
    /// A version this build does not read.
    #[error("repository format version {0} is not supported by this cbsnap (it reads 1..={FORMAT_VERSION}); upgrade cbsnap")]
    Unsupported(u32),
    /// The trailing BLAKE3 checksum does not match the bytes (or is missing).
    #[error("the config's checksum does not match its contents; the file is damaged. Restore `config` from a copy of the repository (a mirror or an rsync copy holds the same file)")]
    Checksum,
    /// The body is not the JSON of a config (the rendered `serde_json` error).
    #[error("repository config is not valid JSON: {0}")]
    Json(String),
    /// The header and the body disagree on the version; the file is damaged.
    #[error(
        "the config header says version {header} but its body says {body}; the file is damaged"
    )]
    VersionMismatch { header: u32, body: u32 },
    /// A chunker other than FastCDC 2020.
    #[error("unknown chunker {0:?}; the config is damaged")]
    UnknownChunker(String),
    /// Chunk sizes (bytes) FastCDC does not accept, or not ordered min ≤ avg ≤ max.
    #[error("chunker sizes {min}/{avg}/{max} are out of FastCDC's range; the config is damaged")]
    ChunkerSizes { min: u32, avg: u32, max: u32 },
    /// `zstd_level` outside -7..=22 or a `pack_target_size` of 0.
    #[error("the config's zstd_level or pack_target_size is out of range; the file is damaged")]
    OutOfRange,
    /// An `encryption` section in a config older than [`ENCRYPTION_SINCE`].
    #[error("a version {0} config cannot be encrypted; the file is damaged")]
    EncryptedTooOld(u32),
    /// A cipher, id hash or key directory this build does not know.
    #[error("the repository is encrypted with {} / {} (keys in {}), which this cbsnap does not know; upgrade cbsnap", .0.cipher, .0.id_hash, .0.keys)]
    UnknownEncryption(Encryption),
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Always `"fastcdc-v2020"`.
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl ChunkerParams {
    /// The parameters must be ones FastCDC accepts (its own bounds) and ordered.
    ///
    /// Errors: [`ConfigError::UnknownChunker`], [`ConfigError::ChunkerSizes`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        if self.algorithm != "fastcdc-v2020" {
            return Err(ConfigError::UnknownChunker(self.algorithm.clone()));
        }
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if !ok {
            return Err(ConfigError::ChunkerSizes {
                min: self.min_size,
                avg: self.avg_size,
                max: self.max_size,
            });
        }
        Ok(())
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            algorithm: "fastcdc-v2020".into(),
            min_size: 16 * 1024,
            avg_size: 64 * 1024,
            max_size: 256 * 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoConfig {
    pub version: u32,
    pub id: Id,
    pub chunker: ChunkerParams,
    /// zstd level used for new blobs; readers do not need it.
    pub zstd_level: i32,
    /// A pack is closed once it reaches this many bytes.
    pub pack_target_size: u64,
    pub created: String,
    /// How the repository is encrypted; absent: not encrypted (format version 3; older
    /// configs never have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// The `encryption` object of an encrypted repository's config. It names the
/// algorithms and where the key files are; the keys themselves are never in the
/// config, which stays readable without them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Encryption {
    /// Always `"xchacha20-poly1305"`: every blob, pack trailer and snapshot file is
    /// sealed with it.
    pub cipher: String,
    /// Always `"blake3-keyed"`: blob ids are BLAKE3 keyed with the master key's id key.
    pub id_hash: String,
    /// Always `"keys/"`: the directory of the key files that wrap the master key.
    pub keys: String,
}

impl Encryption {
    /// What this build writes and the only values it reads.
    pub fn current() -> Encryption {
        Encryption {
            cipher: "xchacha20-poly1305".into(),
            id_hash: "blake3-keyed".into(),
            keys: "keys/".into(),
        }
    }
}

impl RepoConfig {
    /// The config of a new unencrypted repository ([`UNENCRYPTED_VERSION`]), with a
    /// random id and today's default parameters.
    pub fn new() -> RepoConfig {
        RepoConfig {
            version: UNENCRYPTED_VERSION,
            id: Id::random(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_target_size: 16 * 1024 * 1024,
            created: chrono::Utc::now().to_rfc3339(),
            encryption: None,
        }
    }

    /// Whether the repository's data is encrypted.
    pub fn encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// The file's bytes in the layout of `self.version` (with the checksum from
    /// version [`CHECKSUM_SINCE`] on, so a version 1 config re-encodes unchanged).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = codec::header(MAGIC, self.version).to_vec();
        out.extend_from_slice(
            serde_json::to_string_pretty(self)
                .expect("config serializes")
                .as_bytes(),
        );
        out.push(b'\n');
        if self.version >= CHECKSUM_SINCE {
            let sum = blake3::hash(&out);
            out.extend_from_slice(sum.as_bytes());
        }
        out
    }

    /// Parse and verify a `config` file of any version this build reads.
    ///
    /// Errors: [`ConfigError`]; every one means the file is not a config this build
    /// can trust, and nothing may be written to the repository.
    pub fn decode(buf: &[u8]) -> Result<RepoConfig, ConfigError> {
        let v = codec::check_header(buf, MAGIC, "repository config")?;
        if v == 0 || v > FORMAT_VERSION {
            // A newer cbsnap's config names its version in its body as well; a header
            // whose version bytes were damaged disagrees with its body, and "upgrade
            // cbsnap" would be the wrong advice.
            if header_disagrees(buf, v) {
                return Err(ConfigError::Checksum);
            }
            return Err(ConfigError::Unsupported(v));
        }
        let body = if v >= CHECKSUM_SINCE {
            let split = buf
                .len()
                .checked_sub(32)
                .filter(|&n| n >= codec::HEADER_LEN)
                .ok_or(ConfigError::Checksum)?;
            let (data, sum) = buf.split_at(split);
            if blake3::hash(data).as_bytes() != sum {
                return Err(ConfigError::Checksum);
            }
            &data[codec::HEADER_LEN..]
        } else {
            &buf[codec::HEADER_LEN..]
        };
        let cfg: RepoConfig =
            serde_json::from_slice(body).map_err(|e| ConfigError::Json(e.to_string()))?;
        if cfg.version != v {
            return Err(ConfigError::VersionMismatch {
                header: v,
                body: cfg.version,
            });
        }
        cfg.chunker.validate()?;
        match &cfg.encryption {
            Some(_) if v < ENCRYPTION_SINCE => return Err(ConfigError::EncryptedTooOld(v)),
            Some(e) if *e != Encryption::current() => {
                return Err(ConfigError::UnknownEncryption(e.clone()))
            }
            _ => {}
        }
        if !(-7..=22).contains(&cfg.zstd_level) || cfg.pack_target_size == 0 {
            return Err(ConfigError::OutOfRange);
        }
        Ok(cfg)
    }
}

/// Whether the JSON body of `buf` (with or without the trailing checksum) names a
/// version other than the header's `v`. `false` when no body parses as JSON with a
/// version: a format this cbsnap cannot read, whatever it holds.
fn header_disagrees(buf: &[u8], v: u32) -> bool {
    let Some(body) = buf.get(codec::HEADER_LEN..) else {
        return false;
    };
    let unsummed = body.get(..body.len().saturating_sub(32));
    [Some(body), unsummed].into_iter().flatten().any(|b| {
        serde_json::from_slice::<serde_json::Value>(b)
            .ok()
            .and_then(|j| j.get("version")?.as_u64())
            .is_some_and(|body_v| body_v != u64::from(v))
    })
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = RepoConfig::new();
        assert_eq!(RepoConfig::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn damaged_configs_are_refused() {
        // Fuzzer findings: chunker sizes FastCDC cannot take, and a body whose version
        // disagrees with the header.
        let mut c = RepoConfig::new();
        c.chunker.min_size = 0;
        assert!(matches!(
            RepoConfig::decode(&c.encode()),
            Err(ConfigError::ChunkerSizes { min: 0, .. })
        ));
        let mut c = RepoConfig::new();
        c.chunker.avg_size = c.chunker.max_size * 2;
        assert!(RepoConfig::decode(&c.encode()).is_err());
        let mut c = RepoConfig::new();
        c.version = 1;
        let mut bytes = c.encode();
        let body = String::from_utf8(bytes.split_off(codec::HEADER_LEN)).unwrap();
        bytes.extend_from_slice(body.replace("\"version\": 1", "\"version\": 2").as_bytes());
        assert!(matches!(
            RepoConfig::decode(&bytes),
            Err(ConfigError::VersionMismatch { header: 1, body: 2 })
        ));
    }

    /// A damaged version in the header is damage ("restore `config` from a copy"),
    /// not a newer format ("upgrade cbsnap"), when the body names another version; a
    /// config whose body names the header's newer version is a newer format.
    #[test]
    fn a_damaged_header_version_is_damage_not_a_newer_format() {
        let bytes = RepoConfig::new().encode();
        let at = codec::HEADER_LEN - 4;
        let mut bad = bytes.clone();
        bad[at + 1] = b'X';
        assert!(matches!(
            RepoConfig::decode(&bad),
            Err(ConfigError::Checksum)
        ));
        let mut newer = RepoConfig::new();
        newer.version = FORMAT_VERSION + 1;
        let mut bytes = newer.encode();
        bytes[at..codec::HEADER_LEN].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert!(matches!(
            RepoConfig::decode(&bytes),
            Err(ConfigError::Unsupported(v)) if v == FORMAT_VERSION + 1
        ));
    }

    /// Issue 7, case 13: one flipped digit of `chunker.avg_size` is detected.
    #[test]
    fn a_flipped_digit_fails_the_checksum() {
        let c = RepoConfig::new();
        assert_eq!(c.version, UNENCRYPTED_VERSION);
        let bytes = c.encode();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let at = text.find("\"avg_size\": 65536").unwrap() + "\"avg_size\": ".len();
        let mut bad = bytes.clone();
        bad[at] = b'4'; // 45536: still a size FastCDC accepts
        assert!(matches!(
            RepoConfig::decode(&bad),
            Err(ConfigError::Checksum)
        ));
        // A truncated file, and a file that lost its checksum.
        assert!(RepoConfig::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(matches!(
            RepoConfig::decode(&bytes[..bytes.len() - 32]),
            Err(ConfigError::Checksum)
        ));
    }

    /// An encrypted config says so, stays plain JSON (readable without the key), and
    /// an unknown cipher is refused with "upgrade cbsnap".
    #[test]
    fn encryption_is_recorded_in_the_clear() {
        let mut c = RepoConfig::new();
        c.encryption = Some(Encryption::current());
        // An encrypted config of an older version is damaged.
        assert!(matches!(
            RepoConfig::decode(&c.encode()),
            Err(ConfigError::EncryptedTooOld(2))
        ));
        c.version = ENCRYPTION_SINCE;
        let bytes = c.encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("\"cipher\": \"xchacha20-poly1305\""),
            "{text}"
        );
        assert!(text.contains("\"keys\": \"keys/\""));
        assert!(RepoConfig::decode(&bytes).unwrap().encrypted());
        assert!(!RepoConfig::new().encrypted());
        c.encryption.as_mut().unwrap().cipher = "rot13".into();
        assert!(matches!(
            RepoConfig::decode(&c.encode()),
            Err(ConfigError::UnknownEncryption(e)) if e.cipher == "rot13"
        ));
    }

    /// Version 1 configs (no checksum) are still read and re-encode unchanged.
    #[test]
    fn version_1_is_read() {
        let mut c = RepoConfig::new();
        c.version = 1;
        let bytes = c.encode();
        assert_eq!(&bytes[bytes.len() - 2..], b"}\n");
        let back = RepoConfig::decode(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.encode(), bytes);
    }
}
