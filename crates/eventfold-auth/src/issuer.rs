//! The local token issuer of `make up` and the tests: a key pair on disk (PKCS#8 PEM, mode 0600,
//! RSA-2048 signing RS256 by default or Ed25519 signing EdDSA, and the matching one-key JWKS the
//! services trust) that signs eventfold tokens.
//! Production tokens come from a real identity provider; this is for a developer's machine.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use eventfold_runtime::Env;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::error::AuthError;
use crate::principal::{ACTOR_KINDS, valid_subject, valid_tenant};

/// The private key's file name inside the issuer's directory.
pub const KEY_FILE_NAME: &str = "issuer.pem";
/// The public key set's file name inside the issuer's directory.
pub const JWKS_FILE_NAME: &str = "jwks.json";

/// The DER prefix of a PKCS#8 (RFC 8410) Ed25519 private key; the 32-byte seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Where the local issuer's key is and what its tokens say, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// `AUTH_ISSUER_KEY_FILE` (default `<cache>/auth/issuer.pem`).
    pub key_file: PathBuf,
    /// `AUTH_ISSUER` (default `eventfold-local`).
    pub issuer: String,
    /// `AUTH_AUDIENCE` (default `eventfold`).
    pub audience: String,
}

impl IssuerSettings {
    /// Reads `AUTH_ISSUER_KEY_FILE`, `AUTH_ISSUER` and `AUTH_AUDIENCE`, with the local defaults.
    pub fn from_env(env: &Env) -> Self {
        Self {
            key_file: env
                .raw("AUTH_ISSUER_KEY_FILE")
                .map(PathBuf::from)
                .unwrap_or_else(|| default_dir(env).join(KEY_FILE_NAME)),
            issuer: env.string("AUTH_ISSUER", "eventfold-local"),
            audience: env.string("AUTH_AUDIENCE", "eventfold"),
        }
    }

    /// A request for a token of this issuer and audience.
    pub fn request(
        &self,
        subject: &str,
        actor_kind: &str,
        tenant: &str,
        scopes: &[&str],
        ttl: Duration,
    ) -> TokenRequest {
        TokenRequest {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            subject: subject.to_owned(),
            tenant: tenant.to_owned(),
            actor_kind: actor_kind.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ttl,
        }
    }
}

/// `${EVENTFOLD_CACHE:-$HOME/.cache/eventfold}/auth`: where `make up` keeps the issuer's keys.
pub fn default_dir(env: &Env) -> PathBuf {
    let cache = env.raw("EVENTFOLD_CACHE").map_or_else(
        || PathBuf::from(env.string("HOME", "/tmp")).join(".cache/eventfold"),
        PathBuf::from,
    );
    cache.join("auth")
}

/// What a token from the local issuer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// `sub`.
    pub subject: String,
    /// `tenant`.
    pub tenant: String,
    /// `actor_kind`: `user`, `agent` or `system`.
    pub actor_kind: String,
    /// `scope`, joined by spaces.
    pub scopes: Vec<String>,
    /// `exp` - `iat`.
    pub ttl: Duration,
}

/// The kind of key a new local issuer generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IssuerAlgorithm {
    /// RSA-2048 signing RS256 (the default: its signatures are the cheaper to verify).
    #[default]
    Rs256,
    /// Ed25519 signing EdDSA.
    EdDsa,
}

/// A signing key (RSA or Ed25519) and its public JWK.
pub struct LocalIssuer {
    key: EncodingKey,
    algorithm: Algorithm,
    jwk: Value,
    kid: String,
    public_key: Vec<u8>,
}

impl std::fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("kid", &self.kid)
            .finish()
    }
}

impl LocalIssuer {
    /// Loads `dir/issuer.pem`, creating a new RSA key pair first if it is absent, and makes sure
    /// `dir/jwks.json` holds its public key. Safe against a concurrent `init` of the same dir.
    pub fn init(dir: &Path) -> Result<Self, AuthError> {
        Self::init_with(dir, IssuerAlgorithm::default())
    }

    /// [`LocalIssuer::init`], generating a key of `algorithm` when there is none yet (an existing
    /// key is loaded whatever its kind).
    pub fn init_with(dir: &Path, algorithm: IssuerAlgorithm) -> Result<Self, AuthError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| key_error(dir, e))?;
        let key_file = dir.join(KEY_FILE_NAME);
        if !key_file.exists() {
            create_key_file(&key_file, algorithm)?;
        }
        let issuer = Self::load(&key_file)?;
        let jwks_file = dir.join(JWKS_FILE_NAME);
        if !issuer.published_in(&jwks_file) {
            write_atomically(&jwks_file, issuer.jwks_json().as_bytes(), 0o644)?;
        }
        Ok(issuer)
    }

    /// Loads the PKCS#8 PEM key (RSA or Ed25519) in `key_file`.
    pub fn load(key_file: &Path) -> Result<Self, AuthError> {
        let not_a_key = |why: String| {
            AuthError::IssuerKey(format!(
                "{}: not a PKCS#8 RSA or Ed25519 private key: {why}",
                key_file.display()
            ))
        };
        let pem = fs::read_to_string(key_file).map_err(|e| key_error(key_file, e))?;
        let der = pem_body(&pem).ok_or_else(|| not_a_key("no PRIVATE KEY block".into()))?;
        let (key, algorithm, public_key) = if der.starts_with(&PKCS8_ED25519_PREFIX) {
            let key =
                EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| not_a_key(e.to_string()))?;
            (key, Algorithm::EdDSA, Vec::new())
        } else {
            let pair =
                aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).map_err(|e| not_a_key(e.to_string()))?;
            let public = aws_lc_rs::signature::KeyPair::public_key(&pair)
                .as_ref()
                .to_vec();
            let key =
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| not_a_key(e.to_string()))?;
            (key, Algorithm::RS256, public)
        };
        let public =
            Jwk::from_encoding_key(&key, algorithm).map_err(|e| not_a_key(e.to_string()))?;
        // RFC 7638 thumbprint: the same key always gets the same kid.
        let kid = public
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| AuthError::IssuerKey(e.to_string()))?;
        let (jwk, public_key) = match &public.algorithm {
            AlgorithmParameters::OctetKeyPair(p) => {
                let raw = URL_SAFE_NO_PAD
                    .decode(&p.x)
                    .map_err(|e| not_a_key(e.to_string()))?;
                (
                    json!({"kty": "OKP", "crv": "Ed25519", "x": p.x, "kid": kid, "alg": "EdDSA", "use": "sig"}),
                    raw,
                )
            }
            AlgorithmParameters::RSA(p) => (
                json!({"kty": "RSA", "n": p.n, "e": p.e, "kid": kid, "alg": "RS256", "use": "sig"}),
                public_key,
            ),
            _ => return Err(not_a_key("neither RSA nor Ed25519".into())),
        };
        Ok(Self {
            key,
            algorithm,
            jwk,
            kid,
            public_key,
        })
    }

    /// The algorithm the issuer's tokens are signed with (RS256 or EdDSA).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The key id the issuer's tokens name.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key's bytes: 32 raw bytes for Ed25519, the PKCS#1 DER for RSA.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The JWKS document with the issuer's public key.
    pub fn jwks_json(&self) -> String {
        serde_json::to_string_pretty(&json!({ "keys": [self.jwk] })).expect("JSON")
    }

    /// A token for `t`, valid from now for `t.ttl`.
    pub fn issue(&self, t: &TokenRequest) -> Result<String, AuthError> {
        if !valid_subject(&t.subject) {
            return Err(AuthError::BadSubject);
        }
        if !valid_tenant(&t.tenant) {
            return Err(AuthError::BadTenant);
        }
        if !ACTOR_KINDS.contains(&t.actor_kind.as_str()) {
            return Err(AuthError::BadActorKind);
        }
        let now = unix_now();
        self.sign(&json!({
            "iss": t.issuer,
            "aud": t.audience,
            "sub": t.subject,
            "tenant": t.tenant,
            "actor_kind": t.actor_kind,
            "scope": t.scopes.join(" "),
            "iat": now,
            "exp": now + t.ttl.as_secs(),
        }))
    }

    /// Signs arbitrary `claims` (tests use it to forge tokens that break one rule).
    pub fn sign(&self, claims: &Value) -> Result<String, AuthError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| AuthError::IssuerKey(format!("cannot sign: {e}")))
    }

    fn published_in(&self, jwks_file: &Path) -> bool {
        let Ok(text) = fs::read_to_string(jwks_file) else {
            return false;
        };
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            return false;
        };
        doc["keys"]
            .as_array()
            .is_some_and(|keys| keys.contains(&self.jwk))
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The DER inside the PEM's `PRIVATE KEY` block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PRIVATE KEY-----")? + "-----BEGIN PRIVATE KEY-----".len();
    let end = start + pem[start..].find("-----END PRIVATE KEY-----")?;
    let body: String = pem[start..end].split_whitespace().collect();
    STANDARD.decode(body).ok()
}

/// The PKCS#8 DER of a new key of `algorithm`.
fn new_key_der(algorithm: IssuerAlgorithm) -> Result<Vec<u8>, AuthError> {
    match algorithm {
        IssuerAlgorithm::EdDsa => {
            let mut der = PKCS8_ED25519_PREFIX.to_vec();
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| AuthError::IssuerKey(format!("no randomness: {e}")))?;
            der.extend_from_slice(&seed);
            Ok(der)
        }
        IssuerAlgorithm::Rs256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|e| AuthError::IssuerKey(format!("cannot generate an RSA key: {e}")))?;
            let der = pair
                .as_der()
                .map_err(|e| AuthError::IssuerKey(format!("cannot encode the RSA key: {e}")))?;
            Ok(der.as_ref().to_vec())
        }
    }
}

/// Writes a fresh PKCS#8 PEM key to `path` unless another process got there first.
fn create_key_file(path: &Path, algorithm: IssuerAlgorithm) -> Result<(), AuthError> {
    let der = new_key_der(algorithm)?;
    let body = STANDARD
        .encode(&der)
        .as_bytes()
        .chunks(64)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    let temp = temp_beside(path);
    write_new(&temp, pem.as_bytes(), 0o600)?;
    // A hard link does not replace an existing file: the first of two racing inits wins, and
    // nobody ever reads a half-written key.
    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(key_error(path, e)),
    }
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuthError> {
    let temp = temp_beside(path);
    write_new(&temp, bytes, mode)?;
    fs::rename(&temp, path).map_err(|e| {
        let _ = fs::remove_file(&temp);
        key_error(path, e)
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuthError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| key_error(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, e))
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{}.tmp", std::process::id(), unix_nanos()));
    path.with_file_name(name)
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn key_error(path: &Path, e: std::io::Error) -> AuthError {
    AuthError::IssuerKey(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_creates_a_private_key_only_its_owner_reads_and_a_matching_key_set() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::init(&dir.path().join("auth")).unwrap();
        let key = dir.path().join("auth").join(KEY_FILE_NAME);
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let jwks: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join("auth/jwks.json")).unwrap())
                .unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(jwks["keys"][0]["kid"], issuer.kid());
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        assert_eq!(issuer.algorithm(), Algorithm::RS256);
    }

    #[test]
    fn an_ed25519_issuer_publishes_an_okp_key_and_signs_eddsa() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::init_with(dir.path(), IssuerAlgorithm::EdDsa).unwrap();
        assert_eq!(issuer.algorithm(), Algorithm::EdDSA);
        assert_eq!(issuer.public_key().len(), 32);
        let jwks: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        let token = issuer.sign(&json!({"sub": "s"})).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        // Loading the file again finds the Ed25519 key, whatever a later init asks for.
        let again = LocalIssuer::init_with(dir.path(), IssuerAlgorithm::Rs256).unwrap();
        assert_eq!(
            (again.kid(), again.algorithm()),
            (issuer.kid(), Algorithm::EdDSA)
        );
    }

    #[test]
    fn init_again_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalIssuer::init(dir.path()).unwrap();
        let second = LocalIssuer::init(dir.path()).unwrap();
        assert_eq!(first.kid(), second.kid());
        assert_eq!(
            LocalIssuer::load(&dir.path().join(KEY_FILE_NAME))
                .unwrap()
                .kid(),
            first.kid()
        );
    }

    #[test]
    fn init_rewrites_a_key_set_that_lacks_the_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(JWKS_FILE_NAME), r#"{"keys": []}"#).unwrap();
        let issuer = LocalIssuer::init(dir.path()).unwrap();
        let text = fs::read_to_string(dir.path().join(JWKS_FILE_NAME)).unwrap();
        assert!(text.contains(issuer.kid()), "{text}");
    }

    #[test]
    fn refuses_a_key_file_that_is_not_an_rsa_or_ed25519_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.pem");
        fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert_eq!(LocalIssuer::load(&path).unwrap_err().code(), "issuer_key");
        assert_eq!(
            LocalIssuer::load(&dir.path().join("absent.pem"))
                .unwrap_err()
                .code(),
            "issuer_key"
        );
    }

    #[test]
    fn refuses_to_issue_a_token_the_services_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::init(dir.path()).unwrap();
        let request = TokenRequest {
            issuer: "i".into(),
            audience: "a".into(),
            subject: "s".into(),
            tenant: "acme".into(),
            actor_kind: "user".into(),
            scopes: vec![],
            ttl: Duration::from_secs(60),
        };
        assert!(issuer.issue(&request).is_ok());
        let bad_tenant = TokenRequest {
            tenant: "a b".into(),
            ..request.clone()
        };
        assert_eq!(issuer.issue(&bad_tenant), Err(AuthError::BadTenant));
        let bad_kind = TokenRequest {
            actor_kind: "robot".into(),
            ..request
        };
        assert_eq!(issuer.issue(&bad_kind), Err(AuthError::BadActorKind));
    }

    #[test]
    fn settings_default_to_the_cache_directory() {
        let env = Env::from_pairs([("EVENTFOLD_CACHE", "/c")]);
        let s = IssuerSettings::from_env(&env);
        assert_eq!(s.key_file, PathBuf::from("/c/auth/issuer.pem"));
        assert_eq!(
            (s.issuer.as_str(), s.audience.as_str()),
            ("eventfold-local", "eventfold")
        );
        let s = IssuerSettings::from_env(&Env::from_pairs([("HOME", "/h")]));
        assert_eq!(
            s.key_file,
            PathBuf::from("/h/.cache/eventfold/auth/issuer.pem")
        );
        let s = IssuerSettings::from_env(&Env::from_pairs([("AUTH_ISSUER_KEY_FILE", "/k.pem")]));
        assert_eq!(s.key_file, PathBuf::from("/k.pem"));
    }
}
