//! The repository's `config` file: format version, repository id and the parameters
//! that must stay fixed for the life of a repository (changing the chunker would
//! silently break deduplication against every existing snapshot).
//!
//! Layout: `"CBSNAPCF"` || u32 LE version || UTF-8 JSON of [`RepoConfig`].

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::id::Id;

pub const MAGIC: &[u8; 8] = b"CBSNAPCF";
/// The repository format version this build writes. Readers accept 1..=FORMAT_VERSION.
pub const FORMAT_VERSION: u32 = 1;

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
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        if self.algorithm != "fastcdc-v2020" {
            return Err(format!("unknown chunker {:?}", self.algorithm));
        }
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if !ok {
            return Err(format!(
                "chunker sizes {}/{}/{} are out of FastCDC's range; the config is damaged",
                self.min_size, self.avg_size, self.max_size
            ));
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
}

impl RepoConfig {
    pub fn new() -> RepoConfig {
        let seed = format!(
            "{}-{}-{:?}",
            std::process::id(),
            gethostname::gethostname().to_string_lossy(),
            std::time::SystemTime::now()
        );
        RepoConfig {
            version: FORMAT_VERSION,
            id: Id::hash(seed.as_bytes()),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            pack_target_size: 16 * 1024 * 1024,
            created: chrono::Utc::now().to_rfc3339(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = codec::header(MAGIC, self.version).to_vec();
        out.extend_from_slice(
            serde_json::to_string_pretty(self)
                .expect("config serializes")
                .as_bytes(),
        );
        out.push(b'\n');
        out
    }

    pub fn decode(buf: &[u8]) -> Result<RepoConfig, String> {
        let v = codec::check_header(buf, MAGIC, "repository config").map_err(|e| e.to_string())?;
        if v == 0 || v > FORMAT_VERSION {
            return Err(format!(
                "repository format version {v} is not supported by this cbsnap (it reads 1..={FORMAT_VERSION}); upgrade cbsnap"
            ));
        }
        let cfg: RepoConfig = serde_json::from_slice(&buf[codec::HEADER_LEN..])
            .map_err(|e| format!("repository config is not valid JSON: {e}"))?;
        if cfg.version != v {
            return Err(format!(
                "the config header says version {v} but its body says {}; the file is damaged",
                cfg.version
            ));
        }
        cfg.chunker.validate()?;
        if !(-7..=22).contains(&cfg.zstd_level) || cfg.pack_target_size == 0 {
            return Err(
                "the config's zstd_level or pack_target_size is out of range; the file is damaged"
                    .into(),
            );
        }
        Ok(cfg)
    }
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
        assert!(RepoConfig::decode(&c.encode())
            .unwrap_err()
            .contains("out of FastCDC's range"));
        let mut c = RepoConfig::new();
        c.chunker.avg_size = c.chunker.max_size * 2;
        assert!(RepoConfig::decode(&c.encode()).is_err());
        let c = RepoConfig::new();
        let mut bytes = c.encode();
        let body = String::from_utf8(bytes.split_off(codec::HEADER_LEN)).unwrap();
        bytes.extend_from_slice(body.replace("\"version\": 1", "\"version\": 2").as_bytes());
        assert!(RepoConfig::decode(&bytes).unwrap_err().contains("damaged"));
    }
}
