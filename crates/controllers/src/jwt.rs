//! ES256 JSON Web Tokens for legacy (Secret-based) service-account tokens.
//!
//! kube-controller-manager signs the tokens it writes into `kubernetes.io/service-account-token`
//! Secrets with `--service-account-private-key-file`; kube-apiserver verifies them with the
//! matching `--service-account-key-file`. The lab's key is an ECDSA P-256 key in PKCS#8 PEM,
//! so the algorithm is ES256 (RFC 7518 §3.4: the signature is the raw 64-byte `r || s`, which
//! is ring's `*_FIXED` encoding). The header's `kid` is what Kubernetes puts there: the
//! unpadded base64url SHA-256 of the public key's PKIX (SubjectPublicKeyInfo) DER, so a
//! verifier can pick the key out of several.
//!
//! This module exists because `proxylab-apimachinery` had no `serviceaccount` signing function
//! when the controllers were written; it follows the same header and claims the request in
//! `requests-apimachinery.md` describes so either side can verify the other's tokens.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

/// The `iss` kube-controller-manager writes into legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// Errors loading the signing key or signing.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("service-account signing key: no `-----BEGIN PRIVATE KEY-----` PEM block found")]
    NoPemBlock,
    #[error("service-account signing key: PEM body is not base64: {0}")]
    PemBase64(#[from] base64::DecodeError),
    #[error("service-account signing key: not a PKCS#8 ECDSA P-256 key: {0}")]
    Key(String),
    #[error("signing failed")]
    Sign,
}

/// A loaded ES256 signing key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// DER prefix of a P-256 SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier { id-ecPublicKey,
/// prime256v1 }, BIT STRING (0 unused bits) ... } followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl TokenSigner {
    /// Loads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) P-256 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, JwtError> {
        let der = pem_body(pem, "PRIVATE KEY").ok_or(JwtError::NoPemBlock)??;
        Self::from_pkcs8_der(&der)
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(TokenSigner { key, kid, rng })
    }

    /// The `kid` header value.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The uncompressed public point (65 bytes), for verification in tests.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// Signs `claims` (a JSON object) into a compact JWS.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({ "alg": "ES256", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(sig.as_ref())
        ))
    }
}

/// The claims kube-controller-manager puts into a legacy token (`serviceaccount.LegacyClaims`).
pub fn legacy_claims(
    issuer: &str,
    namespace: &str,
    sa_name: &str,
    sa_uid: &str,
    secret_name: &str,
) -> Value {
    json!({
        "iss": issuer,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret_name,
        "kubernetes.io/serviceaccount/service-account.name": sa_name,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
    })
}

/// Decodes the first PEM block with the given label.
fn pem_body(pem: &str, label: &str) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some(STANDARD.decode(b64))
}

/// Test helper: a fresh P-256 PKCS#8 key as PEM.
pub fn generate_test_key_pem() -> String {
    let rng = SystemRandom::new();
    let doc = match EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng) {
        Ok(d) => d,
        Err(_) => return String::new(),
    };
    let b64 = STANDARD.encode(doc.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn signs_verifiable_es256_with_kubernetes_claims() {
        let signer = TokenSigner::from_pkcs8_pem(&generate_test_key_pem()).unwrap();
        let claims = legacy_claims(LEGACY_ISSUER, "default", "default", "u-1", "default-token");
        let token = signer.sign(&claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], signer.key_id());
        let body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["sub"], "system:serviceaccount:default:default");
        assert_eq!(body["iss"], "kubernetes/serviceaccount");
        assert_eq!(
            body["kubernetes.io/serviceaccount/secret.name"],
            "default-token"
        );
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64);
        let pk = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, signer.public_key());
        pk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        // A tampered body fails.
        assert!(
            pk.verify(format!("{}.{}x", parts[0], parts[1]).as_bytes(), &sig)
                .is_err()
        );
    }

    #[test]
    fn rejects_garbage_keys() {
        assert!(matches!(
            TokenSigner::from_pkcs8_pem("nope"),
            Err(JwtError::NoPemBlock)
        ));
        assert!(matches!(
            TokenSigner::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"
            ),
            Err(JwtError::PemBase64(_))
        ));
        assert!(matches!(
            TokenSigner::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            ),
            Err(JwtError::Key(_))
        ));
    }
}
