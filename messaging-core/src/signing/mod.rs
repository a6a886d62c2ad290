//! Optional HMAC-SHA256 signing of every message, with keys shared per transport.
//!
//! With [`TransportOptions::signing`](crate::TransportOptions::signing) set, the API signs what
//! it sends and checks what it receives, whatever the driver: [`RpcClient`](crate::RpcClient)
//! signs requests and checks replies, [`RpcServer`](crate::RpcServer) checks requests before
//! dispatch and signs replies, [`Notifier`](crate::Notifier) signs and
//! [`NotificationListener`](crate::NotificationListener) checks. A message that fails its check
//! (unsigned, unknown key id, bad signature) is logged with `tracing::warn!` and, in
//! [`SignatureMode::Reject`], dropped: acknowledged, never dispatched, never answered (a forged
//! reply is ignored and the caller keeps waiting for the genuine one). In
//! [`SignatureMode::Warn`] it is logged and processed, for rolling signing out. Each transport
//! counts failed checks ([`RpcTransport::signature_failures`](crate::RpcTransport::signature_failures)).
//!
//! **Wire format.** The signature travels as one more top-level key of the message dict,
//! `"_signature": "hmac-sha256:<key id>:<nonce>:<64 hex digits>"` (inside the `request` dict
//! on AMQP 1.0, beside `response`/`failure` in its replies). Python oslo.messaging ignores
//! unknown keys, so it still reads signed messages; without signing nothing is added and
//! nothing is checked. The MAC covers the nonce and the decoded message in a canonical JSON
//! form (see `canonical.rs`): for requests the topic, call-or-cast, method, args, namespace,
//! version and context; for replies the result, failure, ending and the nonce of the request
//! they answer (so a reply cannot be replayed to another call); for notifications every
//! field and the context. Heartbeats carry no data and are not signed. Ids, reply addresses and
//! `_unique_id` are left out: drivers generate or rewrite them in transit.
//!
//! **Rotation.** The first key signs, every key verifies. Add the new key second everywhere,
//! then move it first everywhere, then remove the old one.
//!
//! ```
//! use messaging_core::signing::{SignatureError, SignatureMode, Signing, SigningKey};
//! use messaging_core::wire::RpcRequest;
//!
//! let old = SigningKey::new("k1", "an old secret of 16+ bytes")?;
//! let new = SigningKey::new("k2", "a new secret of 16+ bytes")?;
//! let sender = Signing::new([new.clone(), old.clone()])?;      // k2 signs, k1 still verifies
//! let receiver = Signing::parse("k1:an old secret of 16+ bytes")?.with_mode(SignatureMode::Warn);
//!
//! let mut request = RpcRequest {
//!     method: "reboot".into(),
//!     args: Default::default(),
//!     namespace: None,
//!     version: None,
//!     context: Default::default(),
//!     signature: None,
//! };
//! sender.sign_request("compute", false, &mut request);
//! assert!(request.signature.as_deref().unwrap().starts_with("hmac-sha256:k2:"));
//! assert!(sender.verify_request("compute", false, &request).is_ok());
//! // A receiver that does not know k2 yet:
//! assert_eq!(
//!     receiver.verify_request("compute", false, &request),
//!     Err(SignatureError::UnknownKey("k2".into()))
//! );
//! request.args.insert("force".into(), true.into()); // tampering
//! assert!(matches!(sender.verify_request("compute", false, &request), Err(SignatureError::BadSignature(_))));
//! # Ok::<(), messaging_core::MessagingError>(())
//! ```

mod canonical;
mod key;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{MessagingError, Result};
use crate::wire::{self, NotificationMessage, Reply, ReplyEvent, RpcRequest};

pub use key::{SigningKey, MIN_SECRET_LEN};

/// The algorithm tag that starts every signature.
pub const ALGORITHM: &str = "hmac-sha256";

type HmacSha256 = Hmac<Sha256>;

/// What a receiver does with a message that fails its signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Log it and drop it (the default).
    #[default]
    Reject,
    /// Log it and process it anyway: for rolling signing out to peers that do not sign yet.
    Warn,
}

impl FromStr for SignatureMode {
    type Err = MessagingError;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim() {
            "reject" => Ok(Self::Reject),
            "warn" => Ok(Self::Warn),
            other => Err(key::invalid(format!(
                "signing mode `{other}` is neither `reject` nor `warn`"
            ))),
        }
    }
}

impl fmt::Display for SignatureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reject => "reject",
            Self::Warn => "warn",
        })
    }
}

/// Why a received message failed its signature check. Its text never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The message carries no signature.
    #[error("unsigned message")]
    Unsigned,
    /// The signature is not `hmac-sha256:<key id>:<nonce>:<64 hex digits>`.
    #[error("malformed signature: {0}")]
    Malformed(&'static str),
    /// The signature names a key this transport does not hold.
    #[error("unknown signing key id `{0}`")]
    UnknownKey(String),
    /// The MAC does not match: the message was altered, or signed with another secret.
    #[error("bad signature (key id `{0}`)")]
    BadSignature(String),
}

/// Signing settings of a transport: its keys (the first signs, all verify) and what to do with
/// messages that fail their check.
///
/// Deserializes from `{"keys": [{"id": "k1", "secret": "…"}], "mode": "reject"}`; serializes
/// without the secrets (see [`SigningKey`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SigningSpec")]
pub struct Signing {
    keys: Vec<SigningKey>,
    mode: SignatureMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningSpec {
    keys: Vec<SigningKey>,
    #[serde(default)]
    mode: SignatureMode,
}

impl TryFrom<SigningSpec> for Signing {
    type Error = MessagingError;

    fn try_from(spec: SigningSpec) -> Result<Self> {
        Ok(Signing::new(spec.keys)?.with_mode(spec.mode))
    }
}

/// A parsed `_signature` value.
struct Token<'a> {
    key_id: &'a str,
    nonce: &'a str,
    mac: [u8; 32],
}

impl<'a> Token<'a> {
    fn parse(signature: Option<&'a str>) -> Result<Self, SignatureError> {
        let signature = signature.ok_or(SignatureError::Unsigned)?;
        let mut parts = signature.split(':');
        let (Some(algorithm), Some(key_id), Some(nonce), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SignatureError::Malformed("expected 4 `:`-separated parts"));
        };
        if algorithm != ALGORITHM {
            return Err(SignatureError::Malformed("unknown algorithm"));
        }
        if key_id.is_empty() || nonce.is_empty() {
            return Err(SignatureError::Malformed("empty key id or nonce"));
        }
        Ok(Self {
            key_id,
            nonce,
            mac: decode_hex(mac)
                .ok_or(SignatureError::Malformed("the MAC is not 64 hex digits"))?,
        })
    }
}

/// The nonce of a request's signature, which its replies name.
fn nonce_of(signature: Option<&str>) -> Option<&str> {
    Token::parse(signature).ok().map(|token| token.nonce)
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

fn mac(key: &SigningKey, canonical: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key.secret()).expect("HMAC takes keys of any length");
    mac.update(canonical);
    mac
}

impl Signing {
    /// Sign with the first of `keys` and accept all of them, rejecting what fails its check.
    /// No keys, or two with one id, is an [`MessagingError::InvalidConfig`] error.
    pub fn new(keys: impl IntoIterator<Item = SigningKey>) -> Result<Self> {
        let keys: Vec<SigningKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(key::invalid("signing needs at least one key".into()));
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id() == key.id()) {
                return Err(key::invalid(format!(
                    "signing key id `{}` is given twice",
                    key.id()
                )));
            }
        }
        Ok(Self {
            keys,
            mode: SignatureMode::Reject,
        })
    }

    /// Parse keys written `id:secret`, separated by commas or newlines (the first signs), as
    /// the `keys` option of `[oslo_messaging_signing]` gives them.
    pub fn parse(keys: &str) -> Result<Self> {
        Self::new(
            keys.split([',', '\n'])
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(SigningKey::parse)
                .collect::<Result<Vec<_>>>()?,
        )
    }

    /// The same keys with another [`SignatureMode`].
    pub fn with_mode(mut self, mode: SignatureMode) -> Self {
        self.mode = mode;
        self
    }

    /// What receivers do with messages that fail their check.
    pub fn mode(&self) -> SignatureMode {
        self.mode
    }

    /// The keys: the first signs, all verify.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// A signature over `canonical(nonce)` with a fresh nonce.
    fn sign(&self, canonical: impl FnOnce(&str) -> Vec<u8>) -> String {
        let key = &self.keys[0];
        let nonce = wire::new_id();
        let tag = mac(key, &canonical(&nonce)).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{ALGORITHM}:{}:{nonce}:{hex}", key.id())
    }

    /// Check `signature` over `canonical(nonce)`, in constant time.
    fn verify(
        &self,
        signature: Option<&str>,
        canonical: impl FnOnce(&str) -> Vec<u8>,
    ) -> Result<(), SignatureError> {
        let token = Token::parse(signature)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id() == token.key_id)
            .ok_or_else(|| SignatureError::UnknownKey(token.key_id.to_owned()))?;
        mac(key, &canonical(token.nonce))
            .verify_slice(&token.mac)
            .map_err(|_| SignatureError::BadSignature(key.id().to_owned()))
    }

    /// Sign a request sent to `topic` (`call`: whether it expects a reply), replacing any
    /// signature it had.
    pub fn sign_request(&self, topic: &str, call: bool, request: &mut RpcRequest) {
        let signature = self.sign(|nonce| canonical::request(nonce, topic, call, request));
        request.signature = Some(signature);
    }

    /// Check a request received on `topic` (`call`: whether it came with a reply address).
    pub fn verify_request(
        &self,
        topic: &str,
        call: bool,
        request: &RpcRequest,
    ) -> Result<(), SignatureError> {
        self.verify(request.signature.as_deref(), |nonce| {
            canonical::request(nonce, topic, call, request)
        })
    }

    /// The reply `event` to the request signed `request_signature`, signed (heartbeats stay
    /// unsigned: they carry nothing).
    pub fn sign_reply(&self, request_signature: Option<&str>, event: ReplyEvent) -> Reply {
        let in_reply_to = nonce_of(request_signature);
        let mut signature = None;
        if !matches!(event, ReplyEvent::Heartbeat) {
            signature = Some(self.sign(|nonce| {
                canonical::reply(nonce, in_reply_to, &event).expect("not a heartbeat")
            }));
        }
        Reply { event, signature }
    }

    /// Check a reply to the request this side signed as `request_signature`. Heartbeats pass:
    /// they carry no data, only keep a call-monitor timer going.
    pub fn verify_reply(
        &self,
        request_signature: Option<&str>,
        reply: &Reply,
    ) -> Result<(), SignatureError> {
        if matches!(reply.event, ReplyEvent::Heartbeat) {
            return Ok(());
        }
        let in_reply_to = nonce_of(request_signature);
        self.verify(reply.signature.as_deref(), |nonce| {
            canonical::reply(nonce, in_reply_to, &reply.event).expect("not a heartbeat")
        })
    }

    /// Sign a notification, replacing any signature it had.
    pub fn sign_notification(&self, message: &mut NotificationMessage) {
        let signature = self.sign(|nonce| canonical::notification(nonce, message));
        message.signature = Some(signature);
    }

    /// Check a received notification.
    pub fn verify_notification(&self, message: &NotificationMessage) -> Result<(), SignatureError> {
        self.verify(message.signature.as_deref(), |nonce| {
            canonical::notification(nonce, message)
        })
    }
}

/// A transport's signing at run time: its settings, and the count of failed checks.
#[derive(Debug)]
pub(crate) struct Guard {
    signing: Signing,
    failures: AtomicU64,
    /// The driver's name, the `transport` label of the failure counter.
    transport: &'static str,
}

impl Guard {
    pub(crate) fn new(signing: Signing, transport: &'static str) -> Self {
        Self {
            signing,
            failures: AtomicU64::new(0),
            transport,
        }
    }

    pub(crate) fn signing(&self) -> &Signing {
        &self.signing
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Apply the mode to the check of a received `kind` message about `subject` (a method,
    /// event type…): true if it may be processed. Failures are counted and logged, without
    /// the secret and without the payload.
    pub(crate) fn admit(
        &self,
        check: Result<(), SignatureError>,
        kind: &'static str,
        subject: &str,
    ) -> bool {
        let Err(reason) = check else {
            return true;
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::count_signature_failure(self.transport, kind);
        match self.signing.mode {
            SignatureMode::Reject => {
                tracing::warn!(kind, subject, %reason, "rejecting a message that failed its signature check");
                false
            }
            SignatureMode::Warn => {
                tracing::warn!(kind, subject, %reason, "processing a message that failed its signature check (signing mode `warn`)");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests;
