//! Service-account token *keys* for the apiserver.
//!
//! The token format itself (ES256 JWTs with the legacy or bound claim shapes, signing and verifying) is
//! defined once in [`proxylab_apimachinery::serviceaccount`] so that the controllers (which sign) and the
//! apiserver (which verifies) agree; it is re-exported here. This module adds what only the apiserver
//! needs: reading `--service-account-key-file` PEMs, which may hold public keys (`PUBLIC KEY`, SPKI) or
//! private keys (`PRIVATE KEY`, PKCS#8, whose public half is used), and verifying against several keys
//! (key rotation: kube-apiserver accepts a token signed by any of its configured keys).

pub use proxylab_apimachinery::serviceaccount::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// A public key that verifies tokens: the 65-byte uncompressed P-256 point.
pub type VerifyingKey = Vec<u8>;

const P256_SPKI_PREFIX_LEN: usize = 26;

/// Reads every verifying key in a PEM file: `PUBLIC KEY` blocks, and `PRIVATE KEY` blocks (their public
/// half).
pub fn verifying_keys_from_pem(pem: &[u8]) -> Result<Vec<VerifyingKey>, TokenError> {
    let mut keys = Vec::new();
    for spki in SubjectPublicKeyInfoDer::pem_slice_iter(pem) {
        let spki = spki.map_err(|e| TokenError::Key(e.to_string()))?;
        let der = spki.as_ref();
        // Only P-256 keys: the DER is the fixed prefix and the 65-byte point.
        if der.len() != P256_SPKI_PREFIX_LEN + 65 || der[P256_SPKI_PREFIX_LEN] != 0x04 {
            return Err(TokenError::Key(
                "only ECDSA P-256 public keys are supported".into(),
            ));
        }
        keys.push(der[P256_SPKI_PREFIX_LEN..].to_vec());
    }
    for k in PrivatePkcs8KeyDer::pem_slice_iter(pem) {
        let k = k.map_err(|e| TokenError::Key(e.to_string()))?;
        keys.push(public_key_from_pkcs8(k.secret_pkcs8_der())?);
    }
    if keys.is_empty() {
        return Err(TokenError::Key("no PUBLIC KEY or PRIVATE KEY block".into()));
    }
    Ok(keys)
}

/// Verifies `token` against any of `keys` (preferring the one its `kid` names is an optimisation
/// kube-apiserver makes; with a handful of keys trying each is as good).
pub fn verify_with_any(keys: &[VerifyingKey], token: &str) -> Result<SaClaims, TokenError> {
    let mut last = TokenError::Key("no service-account keys configured".into());
    for k in keys {
        match verify_token(k, token) {
            Ok(c) => return Ok(c),
            Err(TokenError::Signature) => last = TokenError::Signature,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Whether a bearer token looks like a JWT (three base64url parts), so static tokens and JWTs can be
/// told apart without noise.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

    #[test]
    fn pem_keys_and_rotation() {
        let k1 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap()
                .as_ref()
                .to_vec();
        let k2 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap()
                .as_ref()
                .to_vec();
        let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            b64(&k1)
        );
        let keys = verifying_keys_from_pem(pem.as_bytes()).unwrap();
        assert_eq!(keys, vec![public_key_from_pkcs8(&k1).unwrap()]);
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(&public_key_from_pkcs8(&k2).unwrap());
        let pub_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b64(&spki)
        );
        let mut all = keys.clone();
        all.extend(verifying_keys_from_pem(pub_pem.as_bytes()).unwrap());
        let t2 = sign_token(&k2, &SaClaims::legacy("ns", "sa", "u", "s")).unwrap();
        assert!(looks_like_jwt(&t2));
        assert_eq!(verify_with_any(&all, &t2).unwrap().namespace, "ns");
        assert_eq!(verify_with_any(&keys, &t2), Err(TokenError::Signature));
        assert!(verifying_keys_from_pem(b"junk").is_err());
        assert!(!looks_like_jwt("abc"));
    }
}
