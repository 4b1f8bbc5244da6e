//! Who a peer is: an Ed25519 key pair per replica, and the allow-list of
//! peer keys with what each may do.

use std::collections::HashMap;
use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// A replica's public key: what another replica allows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Hex, as a config file writes it.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = BadKey;
    fn from_str(hex: &str) -> Result<PublicKey, BadKey> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(BadKey("a public key is 64 hex digits".into()));
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| BadKey(e.to_string()))?;
        }
        Ok(PublicKey(key))
    }
}

impl PublicKey {
    /// Whether `signature` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, signature)
            .is_ok()
    }
}

/// A key that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("bad key: {0}")]
pub struct BadKey(pub String);

/// A replica's key pair.
///
/// ```
/// use diffsync_peer::identity::Identity;
///
/// let me = Identity::generate();
/// let again = Identity::from_pkcs8(&me.to_pkcs8()).unwrap();
/// assert_eq!(me.public_key(), again.public_key());
/// let signature = me.sign(b"hello");
/// assert!(me.public_key().verifies(b"hello", &signature));
/// assert!(!me.public_key().verifies(b"hullo", &signature));
/// ```
pub struct Identity {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl Identity {
    /// A new random key pair.
    pub fn generate() -> Identity {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("the system's random source works")
            .as_ref()
            .to_vec();
        Identity::from_pkcs8(&pkcs8).expect("a key pair ring just made")
    }

    /// A key pair saved with [`to_pkcs8`](Identity::to_pkcs8).
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Identity, BadKey> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|e| BadKey(e.to_string()))?;
        Ok(Identity {
            pair,
            pkcs8: bytes.to_vec(),
        })
    }

    /// The key pair as PKCS#8 bytes (keep them secret).
    pub fn to_pkcs8(&self) -> Vec<u8> {
        self.pkcs8.clone()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(key)
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public_key())
    }
}

/// What an allowed peer may do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rights {
    /// Reconcile with this replica and fetch its models.
    pub read: bool,
    /// Push changes to it.
    pub write: bool,
    /// The model types it may see (and write); `None`: all.
    pub types: Option<Vec<String>>,
}

impl Rights {
    /// Read everything.
    pub fn read() -> Rights {
        Rights {
            read: true,
            ..Rights::default()
        }
    }

    /// Read and write everything.
    pub fn read_write() -> Rights {
        Rights {
            read: true,
            write: true,
            types: None,
        }
    }

    /// Only these model types.
    pub fn only(mut self, types: &[&str]) -> Rights {
        self.types = Some(types.iter().map(|t| t.to_string()).collect());
        self
    }

    /// Whether a model type is in reach.
    pub fn covers(&self, model_type: &str) -> bool {
        self.types.as_ref().is_none_or(|t| t.iter().any(|x| x == model_type))
    }
}

/// The peers a replica talks to, by public key: the only ones whose
/// requests it answers.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    allowed: HashMap<PublicKey, (String, Rights)>,
}

impl Peers {
    /// No peer allowed.
    pub fn new() -> Peers {
        Peers::default()
    }

    /// Allows a peer, named for logs and errors.
    pub fn allow(mut self, name: impl Into<String>, key: PublicKey, rights: Rights) -> Peers {
        self.allowed.insert(key, (name.into(), rights));
        self
    }

    /// A peer's name and rights, if it is allowed.
    pub fn get(&self, key: &PublicKey) -> Option<&(String, Rights)> {
        self.allowed.get(key)
    }
}
