//! Content identifiers: the BLAKE3-256 hash of a blob's raw (uncompressed) bytes, or of a
//! whole file for packs and snapshots. Ids are printed as 64 lower-case hex digits;
//! users may abbreviate snapshot ids to any unique prefix.

use std::fmt;
use std::str::FromStr;

/// A 32-byte BLAKE3 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub const LEN: usize = 32;

    /// 32 bytes from the operating system's random source: for ids that
    /// `docs/FORMAT.md` says are random (the repository id). Panics as [`random_hex`].
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        fill_random(&mut b);
        Id(b)
    }

    /// Hash `data` with BLAKE3.
    pub fn hash(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    pub fn from_slice(b: &[u8]) -> Option<Id> {
        <[u8; 32]>::try_from(b).ok().map(Id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as shown in listings.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<blake3::Hash> for Id {
    fn from(h: blake3::Hash) -> Id {
        Id(*h.as_bytes())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// `n` bytes from the operating system's random source (`getrandom(2)`), as hex.
///
/// Panics if the OS has no working random source, as `rand`'s `OsRng` does: ids
/// that `docs/FORMAT.md` promises to be random are never made from time or pid.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    fill_random(&mut buf);
    hex::encode(buf)
}

/// Fill `buf` from the operating system's random source; panics as [`random_hex`].
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).unwrap_or_else(|e| panic!("the OS random source failed: {e}"));
}

#[derive(Debug, thiserror::Error)]
#[error("not a 64-digit hex id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Id, ParseIdError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(out))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_and_nonces_vary() {
        let a = random_hex(3);
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(Id::random(), Id::random());
        assert_ne!(random_hex(16), random_hex(16));
    }

    #[test]
    fn hex_round_trip() {
        let id = Id::hash(b"hello");
        let back: Id = id.to_hex().parse().unwrap();
        assert_eq!(id, back);
        assert_eq!(id.short().len(), 8);
        assert!("zz".parse::<Id>().is_err());
    }

    #[test]
    fn known_blake3_vector() {
        // BLAKE3 of the empty input, from the reference test vectors.
        assert_eq!(
            Id::hash(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
