//! Owns [`Digest`], the sha256 content address (`sha256:<64 lowercase hex>`) used for blobs,
//! manifests and cache keys, with strict parsing and canonical printing.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use super::error::{StoreError, clip};

/// A sha256 content digest. Parses only the canonical form `sha256:` + 64 lowercase hex digits
/// and prints the same form, so a digest round-trips through text exactly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The algorithm prefix, including the colon.
    pub const PREFIX: &'static str = "sha256:";

    /// Wraps a raw 32-byte sha256 value.
    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        Digest(sha2::Sha256::digest(data).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits (no prefix), e.g. a blob's file name.
    pub fn from_hex(hex_str: &str) -> Result<Self, StoreError> {
        let bad = |reason| StoreError::InvalidDigest {
            input: clip(hex_str),
            reason,
        };
        if hex_str.len() != 64 {
            return Err(bad("the hex part must be exactly 64 digits"));
        }
        if !hex_str
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad("the hex part may contain only 0-9 and a-f"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut out).map_err(|_| bad("not valid hex"))?;
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, StoreError> {
        let Some(hex_part) = s.strip_prefix(Self::PREFIX) else {
            let reason = if s.contains(':') {
                "only the sha256 algorithm is supported"
            } else {
                "it lacks the `sha256:` prefix"
            };
            return Err(StoreError::InvalidDigest {
                input: clip(s),
                reason,
            });
        };
        Digest::from_hex(hex_part).map_err(|e| match e {
            StoreError::InvalidDigest { reason, .. } => StoreError::InvalidDigest {
                input: clip(s),
                reason,
            },
            other => other,
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_canonical_form() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(Digest::from_hex(&d.hex()).unwrap(), d);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn rejects_everything_else() {
        let upper = EMPTY.replace('e', "E");
        let cases = [
            "",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            upper.as_str(),
            " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../../../etc/passwd",
        ];
        for case in cases {
            let err = case.parse::<Digest>().unwrap_err();
            assert!(matches!(err, StoreError::InvalidDigest { .. }), "{case}");
            assert!(err.to_string().contains("64 lowercase hex"), "{err}");
        }
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }
}
