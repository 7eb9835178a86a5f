//! The service-account signing key, loaded once.
//!
//! kube-controller-manager signs the tokens it writes into `kubernetes.io/service-account-token`
//! Secrets with `--service-account-private-key-file`; kube-apiserver verifies them with the
//! matching `--service-account-key-file`. Both halves live in
//! `proxylab_apimachinery::serviceaccount` (ES256 over a P-256 PKCS#8 key, `kid` = base64url
//! SHA-256 of the public key's SPKI DER, kube-controller-manager's legacy claim names) so the
//! lab's controllers and apiservers cannot disagree on the format. This module only loads and
//! checks the key at start-up, so a bad key is a configuration error rather than a failure on
//! the first Secret.

use proxylab_apimachinery::serviceaccount::{self as sa, SaClaims, TokenError};

pub use proxylab_apimachinery::serviceaccount::LEGACY_ISSUER;

/// Errors loading the signing key or signing.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("service-account signing key: {0}")]
    Key(TokenError),
    #[error("signing a service-account token: {0}")]
    Sign(TokenError),
}

/// A validated P-256 PKCS#8 signing key.
pub struct TokenSigner {
    pkcs8_der: Vec<u8>,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// Loads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) P-256 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, JwtError> {
        Self::from_pkcs8_der(sa::pkcs8_from_pem(pem).map_err(JwtError::Key)?)
    }

    pub fn from_pkcs8_der(pkcs8_der: Vec<u8>) -> Result<Self, JwtError> {
        let public_key = sa::public_key_from_pkcs8(&pkcs8_der).map_err(JwtError::Key)?;
        Ok(TokenSigner {
            pkcs8_der,
            public_key,
        })
    }

    /// The `kid` header value of the tokens this key signs.
    pub fn key_id(&self) -> String {
        sa::key_id(&self.public_key)
    }

    /// The uncompressed public point (65 bytes): what the apiserver verifies with.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Signs a legacy Secret-based token for `namespace/sa_name`.
    pub fn sign_legacy(
        &self,
        issuer: &str,
        namespace: &str,
        sa_name: &str,
        sa_uid: &str,
        secret_name: &str,
    ) -> Result<String, JwtError> {
        let mut claims = SaClaims::legacy(namespace, sa_name, sa_uid, secret_name);
        claims.iss = issuer.to_string();
        sa::sign_token(&self.pkcs8_der, &claims).map_err(JwtError::Sign)
    }
}

/// Test helper: a fresh P-256 PKCS#8 key as PEM.
pub fn generate_test_key_pem() -> String {
    use base64::Engine as _;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let rng = ring::rand::SystemRandom::new();
    let Ok(doc) = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng) else {
        return String::new();
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
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

    #[test]
    fn signed_tokens_verify_with_the_apiserver_half() {
        let signer = TokenSigner::from_pkcs8_pem(&generate_test_key_pem()).unwrap();
        let token = signer
            .sign_legacy(LEGACY_ISSUER, "default", "default", "u-1", "default-token")
            .unwrap();
        let claims = sa::verify_token(signer.public_key(), &token).unwrap();
        assert_eq!(claims.sub, "system:serviceaccount:default:default");
        assert_eq!(claims.iss, "kubernetes/serviceaccount");
        assert_eq!(claims.secret_name.as_deref(), Some("default-token"));
        assert_eq!(claims.service_account_uid, "u-1");
        let other = TokenSigner::from_pkcs8_pem(&generate_test_key_pem()).unwrap();
        assert!(sa::verify_token(other.public_key(), &token).is_err());
    }

    #[test]
    fn rejects_garbage_keys() {
        assert!(matches!(
            TokenSigner::from_pkcs8_pem("nope"),
            Err(JwtError::Key(_))
        ));
        assert!(matches!(
            TokenSigner::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"
            ),
            Err(JwtError::Key(_))
        ));
        assert!(matches!(
            TokenSigner::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
            ),
            Err(JwtError::Key(_))
        ));
    }
}
