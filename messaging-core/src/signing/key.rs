//! Signing keys: an id that travels in every signature and a secret that never leaves the
//! process (not through `Debug`, logs, errors nor serde output).

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{MessagingError, Result};

/// The shortest secret accepted: HMAC-SHA256 is only as strong as its key.
pub const MIN_SECRET_LEN: usize = 16;

/// The longest key id accepted (ids travel in every signature).
const MAX_ID_LEN: usize = 64;

/// One shared HMAC-SHA256 key: the `id` names it in signatures, so that receivers holding
/// several keys (during a rotation) know which one to check with.
///
/// `Debug` prints the id only. Serializing writes the id only: a configuration dumped with
/// serde never contains secrets, and cannot be read back until they are added again.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "KeySpec")]
pub struct SigningKey {
    id: String,
    secret: Vec<u8>,
}

/// What a configuration gives for one key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    id: String,
    secret: String,
}

impl TryFrom<KeySpec> for SigningKey {
    type Error = MessagingError;

    fn try_from(spec: KeySpec) -> Result<Self> {
        SigningKey::new(spec.id, spec.secret)
    }
}

impl SigningKey {
    /// A key named `id` (1 to 64 characters among `A-Z a-z 0-9 . _ -`) with `secret` (its bytes,
    /// at least [`MIN_SECRET_LEN`] of them). Anything else is an
    /// [`MessagingError::InvalidConfig`] error, which names the id but never the secret.
    pub fn new(id: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<Self> {
        let id = id.into();
        let id_ok = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err(invalid(format!(
                "signing key id `{id}` must be 1 to {MAX_ID_LEN} characters among A-Z a-z 0-9 . _ -"
            )));
        }
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(invalid(format!(
                "the secret of signing key `{id}` has {} bytes; at least {MIN_SECRET_LEN} are needed",
                secret.len()
            )));
        }
        Ok(Self {
            id,
            secret: secret.to_vec(),
        })
    }

    /// Parse `id:secret` (the secret is everything after the first `:`).
    pub fn parse(text: &str) -> Result<Self> {
        let (id, secret) = text
            .split_once(':')
            .ok_or_else(|| invalid("a signing key must be written `id:secret`".into()))?;
        Self::new(id.trim(), secret.trim())
    }

    /// The key's id, as it appears in signatures.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret, for computing MACs.
    pub(super) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id)
            .field("secret", &"***")
            .finish()
    }
}

impl Serialize for SigningKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut key = serializer.serialize_struct("SigningKey", 1)?;
        key.serialize_field("id", &self.id)?;
        key.end()
    }
}

pub(super) fn invalid(reason: String) -> MessagingError {
    MessagingError::InvalidConfig { line: None, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef-secret";

    #[test]
    fn secrets_are_never_shown() {
        let key = SigningKey::new("k1", SECRET).unwrap();
        assert!(!format!("{key:?}").contains("secret-"), "{key:?}");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, r#"{"id":"k1"}"#);
        let err = SigningKey::new("k1", "short-secret").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidConfig { .. })
                && !err.to_string().contains("short-secret"),
            "{err}"
        );
    }

    #[test]
    fn ids_are_checked_and_secrets_may_contain_colons() {
        for bad in ["", "a:b", "a b", "k,1", &"x".repeat(65)] {
            assert!(SigningKey::new(bad, SECRET).is_err(), "{bad:?}");
        }
        let key = SigningKey::parse(" k-2.a : pass:with:colons:123456 ").unwrap();
        assert_eq!(key.id(), "k-2.a");
        assert_eq!(key.secret(), b"pass:with:colons:123456");
        assert!(SigningKey::parse("no-colon").is_err());
    }

    #[test]
    fn deserializes_with_validation() {
        let key: SigningKey =
            serde_json::from_str(&format!(r#"{{"id": "k1", "secret": "{SECRET}"}}"#)).unwrap();
        assert_eq!(key, SigningKey::new("k1", SECRET).unwrap());
        assert!(serde_json::from_str::<SigningKey>(r#"{"id": "k1", "secret": "short"}"#).is_err());
        assert!(serde_json::from_str::<SigningKey>(r#"{"id": "k1"}"#).is_err());
    }
}
