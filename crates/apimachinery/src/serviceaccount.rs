//! Service-account tokens: the JWTs that let a Pod (or `curl --header "Authorization: Bearer …"`) talk to
//! the apiserver as `system:serviceaccount:<namespace>:<name>`.
//!
//! In Kubernetes the token controller of kube-controller-manager *signs* a token for every Secret of type
//! `kubernetes.io/service-account-token`, and kube-apiserver *verifies* bearer tokens with the matching
//! public key. The two live in different processes (in the lab, different crates), so the token format —
//! header, claims, signature — is defined once, here.
//!
//! Format (a compact JWS, RFC 7515/7519):
//! - header `{"alg":"ES256","kid":<base64url SHA-256 of the public key's SubjectPublicKeyInfo DER>,"typ":"JWT"}`
//!   (kube-controller-manager uses RS256 or ES256 depending on the key; the lab's key is P-256, so ES256);
//! - claims of a *legacy* Secret-based token, as kube-controller-manager writes them:
//!   `iss: "kubernetes/serviceaccount"`, `sub: "system:serviceaccount:<ns>:<name>"`,
//!   `kubernetes.io/serviceaccount/namespace`, `…/secret.name`, `…/service-account.name`,
//!   `…/service-account.uid`. Verification also accepts the *bound* token shape
//!   (`"kubernetes.io": {"namespace", "serviceaccount": {"name","uid"}, "secret": {"name"}}`) that
//!   `TokenRequest` issues, so tokens minted by a real cluster's format parse too.
//! - signature: ECDSA P-256 over `base64url(header).base64url(claims)`, as the fixed 64-byte `r‖s`.
//!
//! Signing uses `ring`, the lab's one crypto provider.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Map, Value, json};

/// The `iss` of legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Tokens are sent without padding; accept padded input too.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a token could not be signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid key: {0}")]
    Key(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("unsupported token algorithm {0:?}")]
    Algorithm(String),
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("invalid token claims: {0}")]
    Claims(String),
    #[error("signing failed")]
    Signing,
}

/// The claims that identify a service account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaClaims {
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    pub namespace: String,
    pub service_account_name: String,
    pub service_account_uid: String,
    /// The Secret holding a legacy token.
    pub secret_name: Option<String>,
    /// Issued-at, seconds since the epoch (legacy tokens have none).
    pub iat: Option<i64>,
    /// Expiry, seconds since the epoch (legacy tokens never expire).
    pub exp: Option<i64>,
}

/// The controllers engineer's name for the same claims.
pub type LegacyTokenClaims = SaClaims;
/// Alias kept for callers that name the error after the module.
pub type ServiceAccountError = TokenError;

impl SaClaims {
    /// Claims of a legacy Secret-based token for `namespace/name` (issuer [`LEGACY_ISSUER`]).
    pub fn legacy(namespace: &str, name: &str, uid: &str, secret_name: &str) -> SaClaims {
        SaClaims {
            iss: LEGACY_ISSUER.to_string(),
            sub: user_name(namespace, name),
            namespace: namespace.to_string(),
            service_account_name: name.to_string(),
            service_account_uid: uid.to_string(),
            secret_name: Some(secret_name.to_string()),
            iat: None,
            exp: None,
        }
    }

    /// The authenticated user name (`sub`, or derived from namespace and name).
    pub fn user(&self) -> String {
        user_name(&self.namespace, &self.service_account_name)
    }

    /// The groups kube-apiserver gives a service account.
    pub fn groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".to_string(),
        ]
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("iss".into(), json!(self.iss));
        m.insert(
            "kubernetes.io/serviceaccount/namespace".into(),
            json!(self.namespace),
        );
        if let Some(s) = &self.secret_name {
            m.insert("kubernetes.io/serviceaccount/secret.name".into(), json!(s));
        }
        m.insert(
            "kubernetes.io/serviceaccount/service-account.name".into(),
            json!(self.service_account_name),
        );
        m.insert(
            "kubernetes.io/serviceaccount/service-account.uid".into(),
            json!(self.service_account_uid),
        );
        let sub = if self.sub.is_empty() {
            self.user()
        } else {
            self.sub.clone()
        };
        m.insert("sub".into(), json!(sub));
        if let Some(iat) = self.iat {
            m.insert("iat".into(), json!(iat));
        }
        if let Some(exp) = self.exp {
            m.insert("exp".into(), json!(exp));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Result<SaClaims, TokenError> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let bound = v.get("kubernetes.io");
        let bs = |path: &[&str]| crate::meta::str_at(bound?, path).map(str::to_string);
        let namespace = s("kubernetes.io/serviceaccount/namespace")
            .or_else(|| bs(&["namespace"]))
            .ok_or_else(|| TokenError::Claims("no service-account namespace".into()))?;
        let name = s("kubernetes.io/serviceaccount/service-account.name")
            .or_else(|| bs(&["serviceaccount", "name"]))
            .ok_or_else(|| TokenError::Claims("no service-account name".into()))?;
        let uid = s("kubernetes.io/serviceaccount/service-account.uid")
            .or_else(|| bs(&["serviceaccount", "uid"]))
            .unwrap_or_default();
        let secret_name =
            s("kubernetes.io/serviceaccount/secret.name").or_else(|| bs(&["secret", "name"]));
        let expected_sub = user_name(&namespace, &name);
        let sub = s("sub").unwrap_or_else(|| expected_sub.clone());
        if sub != expected_sub {
            return Err(TokenError::Claims(format!(
                "sub {sub:?} does not match the service account {expected_sub:?}"
            )));
        }
        Ok(SaClaims {
            iss: s("iss").unwrap_or_default(),
            sub,
            namespace,
            service_account_name: name,
            service_account_uid: uid,
            secret_name,
            iat: v.get("iat").and_then(Value::as_i64),
            exp: v.get("exp").and_then(Value::as_i64),
        })
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The 65-byte uncompressed public point of a P-256 PKCS#8 private key.
pub fn public_key_from_pkcs8(pkcs8_der: &[u8]) -> Result<Vec<u8>, TokenError> {
    let kp = key_pair(pkcs8_der)?;
    Ok(kp.public_key().as_ref().to_vec())
}

/// `kid`: base64url SHA-256 of the SubjectPublicKeyInfo DER of the public key (as kube-apiserver computes
/// it). Accepts the uncompressed point or the SPKI DER.
pub fn key_id(public_key: &[u8]) -> String {
    let spki = spki_der(public_key);
    B64.encode(ring::digest::digest(&ring::digest::SHA256, &spki))
}

fn spki_der(public_key: &[u8]) -> Vec<u8> {
    if public_key.starts_with(&P256_SPKI_PREFIX) {
        public_key.to_vec()
    } else {
        let mut v = P256_SPKI_PREFIX.to_vec();
        v.extend_from_slice(public_key);
        v
    }
}

fn key_pair(pkcs8_der: &[u8]) -> Result<EcdsaKeyPair, TokenError> {
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8_der,
        &SystemRandom::new(),
    )
    .map_err(|e| TokenError::Key(format!("not a P-256 PKCS#8 key: {e}")))
}

/// Decodes the first `-----BEGIN PRIVATE KEY-----` block of a PEM text (PKCS#8 only).
pub fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, TokenError> {
    let begin = "-----BEGIN PRIVATE KEY-----";
    let end = "-----END PRIVATE KEY-----";
    let start = pem
        .find(begin)
        .ok_or_else(|| TokenError::Key("no PKCS#8 \"PRIVATE KEY\" PEM block".into()))?
        + begin.len();
    let stop = pem[start..]
        .find(end)
        .ok_or_else(|| TokenError::Key("unterminated PEM block".into()))?
        + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| TokenError::Key(format!("bad PEM base64: {e}")))
}

/// Signs `claims` with a P-256 PKCS#8 (DER) key: an ES256 compact JWT.
pub fn sign_token(pkcs8_der: &[u8], claims: &SaClaims) -> Result<String, TokenError> {
    let kp = key_pair(pkcs8_der)?;
    let header = json!({"alg":"ES256","kid": key_id(kp.public_key().as_ref()),"typ":"JWT"});
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_json().to_string())
    );
    let sig = kp
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| TokenError::Signing)?;
    Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
}

/// [`sign_token`] with the key as PKCS#8 PEM text.
pub fn sign_legacy_token(key_pkcs8_pem: &str, claims: &SaClaims) -> Result<String, TokenError> {
    sign_token(&pkcs8_from_pem(key_pkcs8_pem)?, claims)
}

/// Turns whatever key material the caller has into the uncompressed public point: the point itself
/// (65 bytes starting 0x04), a P-256 SPKI DER, or a PKCS#8 private key.
fn public_point(key: &[u8]) -> Result<Vec<u8>, TokenError> {
    if key.len() == 65 && key[0] == 0x04 {
        Ok(key.to_vec())
    } else if key.len() == P256_SPKI_PREFIX.len() + 65 && key.starts_with(&P256_SPKI_PREFIX) {
        Ok(key[P256_SPKI_PREFIX.len()..].to_vec())
    } else {
        public_key_from_pkcs8(key)
    }
}

/// Verifies an ES256 token and returns its claims; `exp`/`nbf` are checked against the current time.
pub fn verify_token(public_key: &[u8], token: &str) -> Result<SaClaims, TokenError> {
    let now = jiff::Timestamp::now().as_second();
    verify_token_at(public_key, token, now)
}

/// [`verify_token`] at a given time (seconds since the epoch), for deterministic tests.
pub fn verify_token_at(public_key: &[u8], token: &str, now: i64) -> Result<SaClaims, TokenError> {
    let point = public_point(public_key)?;
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let decode = |part: &str, what: &str| {
        B64.decode(part)
            .map_err(|e| TokenError::Malformed(format!("{what}: {e}")))
    };
    let header: Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if alg != "ES256" {
        return Err(TokenError::Algorithm(alg.to_string()));
    }
    let sig = decode(s, "signature")?;
    let signed = &token.trim()[..h.len() + 1 + p.len()];
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| TokenError::Signature)?;
    let claims_json: Value = serde_json::from_slice(&decode(p, "claims")?)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if let Some(exp) = claims_json.get("exp").and_then(Value::as_i64)
        && now >= exp
    {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims_json.get("nbf").and_then(Value::as_i64)
        && now < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    SaClaims::from_json(&claims_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_key() -> Vec<u8> {
        EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("keygen")
        .as_ref()
        .to_vec()
    }

    #[test]
    fn sign_and_verify_legacy_token() {
        let key = new_key();
        let claims = SaClaims::legacy("default", "default", "uid-1", "default-token");
        let token = sign_token(&key, &claims).expect("sign");
        let public = public_key_from_pkcs8(&key).expect("public");
        assert_eq!(public.len(), 65);
        let got = verify_token_at(&public, &token, 0).expect("verify");
        assert_eq!(
            got,
            SaClaims {
                sub: "system:serviceaccount:default:default".into(),
                ..claims.clone()
            }
        );
        assert_eq!(got.user(), "system:serviceaccount:default:default");
        assert!(
            got.groups()
                .contains(&"system:serviceaccounts:default".to_string())
        );
        // The PKCS#8 and SPKI forms of the key verify too.
        assert!(verify_token_at(&key, &token, 0).is_ok());
        assert!(verify_token_at(&spki_der(&public), &token, 0).is_ok());
        // Header and claim names as kube-controller-manager writes them.
        let mut parts = token.split('.');
        let header: Value =
            serde_json::from_slice(&B64.decode(parts.next().unwrap_or_default()).expect("b64"))
                .expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key_id(&public));
        let body: Value =
            serde_json::from_slice(&B64.decode(parts.next().unwrap_or_default()).expect("b64"))
                .expect("json");
        assert_eq!(body["iss"], "kubernetes/serviceaccount");
        assert_eq!(
            body["kubernetes.io/serviceaccount/secret.name"],
            "default-token"
        );
        assert_eq!(
            body["kubernetes.io/serviceaccount/service-account.uid"],
            "uid-1"
        );
    }

    #[test]
    fn rejects_tampering_other_keys_and_expiry() {
        let key = new_key();
        let other = public_key_from_pkcs8(&new_key()).expect("other");
        let public = public_key_from_pkcs8(&key).expect("public");
        let mut claims = SaClaims::legacy("ns", "sa", "u", "s");
        claims.exp = Some(100);
        let token = sign_token(&key, &claims).expect("sign");
        assert_eq!(
            verify_token_at(&other, &token, 0),
            Err(TokenError::Signature)
        );
        assert_eq!(
            verify_token_at(&public, &token, 100),
            Err(TokenError::Expired)
        );
        assert!(verify_token_at(&public, &token, 99).is_ok());
        // Swap in other claims but keep the signature.
        let forged_claims = B64.encode(
            SaClaims::legacy("kube-system", "admin", "u", "s")
                .to_json()
                .to_string(),
        );
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(
            verify_token_at(&public, &forged, 0),
            Err(TokenError::Signature)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.AAAA"] {
            assert!(verify_token_at(&public, junk, 0).is_err(), "{junk}");
        }
        let none_alg = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(matches!(
            verify_token_at(&public, &none_alg, 0),
            Err(TokenError::Algorithm(_))
        ));
        assert!(sign_token(b"not a key", &claims).is_err());
    }

    #[test]
    fn bound_token_claims_and_pem() {
        let v = json!({"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:a:b",
            "kubernetes.io":{"namespace":"a","serviceaccount":{"name":"b","uid":"u"},"secret":{"name":"s"}}});
        let c = SaClaims::from_json(&v).expect("claims");
        assert_eq!(
            (
                c.namespace.as_str(),
                c.service_account_name.as_str(),
                c.secret_name.as_deref()
            ),
            ("a", "b", Some("s"))
        );
        let bad = json!({"sub":"system:serviceaccount:x:y","kubernetes.io":{"namespace":"a","serviceaccount":{"name":"b"}}});
        assert!(SaClaims::from_json(&bad).is_err());

        let key = new_key();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            general_purpose::STANDARD.encode(&key)
        );
        let token =
            sign_legacy_token(&pem, &SaClaims::legacy("a", "b", "u", "s")).expect("sign pem");
        assert!(verify_token_at(&key, &token, 0).is_ok());
        assert!(pkcs8_from_pem("-----BEGIN EC PRIVATE KEY-----\n").is_err());
    }
}
