//! Cognito sign-in for the local server: it checks the user pool's ID and access tokens
//! itself (RS256 signature against the pool's published keys, issuer, audience, expiry), as
//! API Gateway's JWT authorizer does on AWS, and maps the `cognito:groups` claim to roles with
//! the same [`GroupRoles`]. Tokens from the users file keep working beside it (the CLI and the
//! first admin use them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use axum::body::Bytes;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use labeling_api::Authenticator;
use labeling_api::auth::{GroupRoles, UserLookup, bearer_token};
use labeling_api::web::SignIn;
use labeling_core::Actor;
use serde::Deserialize;
use serde_json::Value;

use crate::users::BearerTokens;

/// The user pool and app client whose tokens this server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoSettings {
    /// `REGION_ID`, as Cognito names pools (`eu-west-1_AbC123`).
    pub user_pool_id: String,
    pub client_id: String,
    /// Where sign-in requests and the pool's keys go: Cognito's regional endpoint unless an
    /// emulator's is given.
    pub endpoint: String,
}

impl CognitoSettings {
    /// Checks the pool id's shape and derives the endpoint from its region when none is given.
    pub fn new(
        user_pool_id: &str,
        client_id: &str,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Self> {
        let (region, id) = user_pool_id
            .split_once('_')
            .filter(|(region, id)| {
                !region.is_empty()
                    && region
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !id.is_empty()
                    && id.chars().all(|c| c.is_ascii_alphanumeric())
            })
            .with_context(|| {
                format!("{user_pool_id:?} is not a Cognito user pool id (REGION_ID, such as eu-west-1_AbC123)")
            })?;
        let endpoint = endpoint.map_or_else(
            || format!("https://cognito-idp.{region}.amazonaws.com/"),
            |given| format!("{}/", given.trim_end_matches('/')),
        );
        // The same checks the web app's configuration makes, before anything is fetched.
        SignIn::cognito(&endpoint, client_id).map_err(anyhow::Error::msg)?;
        Ok(Self {
            user_pool_id: format!("{region}_{id}"),
            client_id: client_id.to_owned(),
            endpoint,
        })
    }

    /// The `iss` claim of the pool's tokens: always the AWS URL, whichever endpoint serves it.
    fn issuer(&self) -> String {
        let region = self.user_pool_id.split('_').next().unwrap_or_default();
        format!(
            "https://cognito-idp.{region}.amazonaws.com/{}",
            self.user_pool_id
        )
    }

    fn keys_url(&self) -> String {
        format!(
            "{}{}/.well-known/jwks.json",
            self.endpoint, self.user_pool_id
        )
    }

    /// What the web app is told (`/app/config.json`).
    pub fn sign_in(&self) -> SignIn {
        SignIn::Cognito {
            endpoint: self.endpoint.clone(),
            client_id: self.client_id.clone(),
        }
    }
}

/// An RSA public key of the pool, as its JSON Web Key Set publishes it.
#[derive(Debug, Clone)]
struct PublicKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    kid: String,
    kty: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

fn parse_key_set(body: &[u8]) -> anyhow::Result<HashMap<String, PublicKey>> {
    let set: KeySet = serde_json::from_slice(body).context("the key set is not JSON Web Keys")?;
    let mut keys = HashMap::new();
    for entry in set.keys.into_iter().filter(|entry| entry.kty == "RSA") {
        let modulus = URL_SAFE_NO_PAD.decode(entry.n.trim_end_matches('='));
        let exponent = URL_SAFE_NO_PAD.decode(entry.e.trim_end_matches('='));
        if let (Ok(modulus), Ok(exponent)) = (modulus, exponent) {
            keys.insert(entry.kid, PublicKey { modulus, exponent });
        }
    }
    if keys.is_empty() {
        bail!("the key set has no RSA key");
    }
    Ok(keys)
}

/// Why a token was refused (logged at debug level; the client only sees 401).
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Malformed,
    Algorithm,
    UnknownKey(String),
    Signature,
    Issuer,
    Audience,
    Expired,
}

/// The pool's keys and the rules a token must pass.
struct Verifier {
    issuer: String,
    client_id: String,
    keys: RwLock<HashMap<String, PublicKey>>,
}

impl Verifier {
    /// The token's claims when it is the pool's, for this client, and not expired at `now`
    /// (seconds since the epoch).
    fn verify(&self, token: &str, now: u64) -> Result<HashMap<String, String>, Refusal> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Refusal::Malformed);
        let header: Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| Refusal::Malformed)?;
        // Only what Cognito signs with: "none", HMAC with the public key as secret and the
        // like are refused before any key is looked at.
        if header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(Refusal::Algorithm);
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(Refusal::Malformed)?;
        let key = self
            .keys
            .read()
            .map_err(|_| Refusal::Malformed)?
            .get(kid)
            .cloned()
            .ok_or_else(|| Refusal::UnknownKey(kid.to_owned()))?;
        let signed = &token[..token.len() - signature.len() - 1];
        RsaPublicKeyComponents {
            n: &key.modulus,
            e: &key.exponent,
        }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &decode(signature)?,
        )
        .map_err(|_| Refusal::Signature)?;

        let claims: serde_json::Map<String, Value> =
            serde_json::from_slice(&decode(payload)?).map_err(|_| Refusal::Malformed)?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("iss") != Some(self.issuer.as_str()) {
            return Err(Refusal::Issuer);
        }
        // ID tokens name the client in `aud`, access tokens in `client_id` (as API Gateway's
        // authorizer accepts either).
        let audience = match text("token_use") {
            Some("id") => text("aud"),
            Some("access") => text("client_id"),
            _ => None,
        };
        if audience != Some(self.client_id.as_str()) {
            return Err(Refusal::Audience);
        }
        match claims.get("exp").and_then(Value::as_u64) {
            Some(expiry) if now < expiry => {}
            _ => return Err(Refusal::Expired),
        }
        // Claims as API Gateway passes them: strings, lists flattened to `[a b]`.
        Ok(claims
            .iter()
            .filter_map(|(name, value)| {
                let flat = match value {
                    Value::String(text) => text.clone(),
                    Value::Array(items) => format!(
                        "[{}]",
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    Value::Number(number) => number.to_string(),
                    _ => return None,
                };
                Some((name.clone(), flat))
            })
            .collect())
    }
}

/// How often an unknown key id may make the server fetch the pool's keys again (Cognito
/// rotates rarely; a flood of forged key ids must not become a flood of fetches).
const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Bearer tokens: the pool's JWTs first, else the users file's tokens.
pub struct CognitoTokens {
    settings: CognitoSettings,
    verifier: Arc<Verifier>,
    roles: GroupRoles,
    users: BearerTokens,
    http: HttpClient,
    last_fetch: Mutex<Instant>,
}

impl CognitoTokens {
    /// Fetches the pool's keys; refused at start when they cannot be had, so a typo in the
    /// pool id is found now, not at the first sign-in.
    pub async fn connect(
        settings: CognitoSettings,
        roles: GroupRoles,
        users: BearerTokens,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .context("loading the system's root certificates")?
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new()).build(connector);
        let keys = fetch_keys(&http, &settings.keys_url()).await?;
        Ok(Self {
            verifier: Arc::new(Verifier {
                issuer: settings.issuer(),
                client_id: settings.client_id.clone(),
                keys: RwLock::new(keys),
            }),
            settings,
            roles,
            users,
            http,
            last_fetch: Mutex::new(Instant::now()),
        })
    }

    /// A token signed with a key this server has not seen may follow a rotation: fetch the
    /// keys again in the background (at most every [`KEY_REFRESH_INTERVAL`]); this request is
    /// refused, the client's retry after the fetch passes.
    fn refresh_keys_soon(&self) {
        let Ok(mut last) = self.last_fetch.lock() else {
            return;
        };
        if last.elapsed() < KEY_REFRESH_INTERVAL {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *last = Instant::now();
        let (http, url, verifier) = (
            self.http.clone(),
            self.settings.keys_url(),
            self.verifier.clone(),
        );
        runtime.spawn(async move {
            match fetch_keys(&http, &url).await {
                Ok(keys) => {
                    if let Ok(mut held) = verifier.keys.write() {
                        *held = keys;
                    }
                }
                Err(error) => tracing::warn!(%url, "fetching the user pool's keys: {error:#}"),
            }
        });
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The most a key set may weigh (Cognito's is about 1 KB).
const KEY_SET_LIMIT: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

async fn fetch_keys(http: &HttpClient, url: &str) -> anyhow::Result<HashMap<String, PublicKey>> {
    let uri: axum::http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    let fetch = async {
        let response = http.get(uri).await?;
        let status = response.status();
        if !status.is_success() {
            bail!("answered {status}");
        }
        let body = Limited::new(response.into_body(), KEY_SET_LIMIT)
            .collect()
            .await
            .map_err(|error| anyhow::anyhow!("reading the answer: {error}"))?;
        parse_key_set(&body.to_bytes())
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {FETCH_TIMEOUT:?}"))
        .and_then(|result| result)
        .with_context(|| format!("fetching the user pool's keys from {url}"))
}

fn seconds_since_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Authenticator for CognitoTokens {
    fn authenticate(&self, parts: &Parts) -> Option<Actor> {
        let token = bearer_token(parts)?;
        // A JWT has two dots; the users file's tokens have none.
        if token.matches('.').count() != 2 {
            return self.users.authenticate(parts);
        }
        match self.verifier.verify(token, seconds_since_epoch()) {
            Ok(claims) => self
                .roles
                .actor(|name| claims.get(name).map(String::as_str)),
            Err(refusal) => {
                if let Refusal::UnknownKey(_) = refusal {
                    self.refresh_keys_soon();
                }
                tracing::debug!(?refusal, "a bearer JWT was refused");
                None
            }
        }
    }

    fn find_user(&self, name: &str) -> UserLookup {
        match self.users.find_user(name) {
            // Pool users are not listed here: any other name is taken as given.
            UserLookup::Missing => UserLookup::Unknowable,
            found => found,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
    use serde_json::json;

    use super::*;

    /// A DER length and the rest of the input after it.
    fn der_length(input: &[u8]) -> (usize, &[u8]) {
        let first = usize::from(input[0]);
        if first < 0x80 {
            return (first, &input[1..]);
        }
        let count = first & 0x7f;
        let length = input[1..=count]
            .iter()
            .fold(0, |length, byte| (length << 8) | usize::from(*byte));
        (length, &input[1 + count..])
    }

    /// `n` and `e` of a PKCS#1 RSAPublicKey (SEQUENCE of two INTEGERs), without leading zeros.
    fn components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (_, body) = der_length(&der[1..]);
        let (n_length, rest) = der_length(&body[1..]);
        let n = rest[..n_length].to_vec();
        let (e_length, rest) = der_length(&rest[n_length + 1..]);
        let e = rest[..e_length].to_vec();
        let strip = |bytes: Vec<u8>| bytes.into_iter().skip_while(|b| *b == 0).collect();
        (strip(n), strip(e))
    }

    struct Pool {
        key: RsaKeyPair,
        verifier: Verifier,
    }

    const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool1";

    impl Pool {
        fn new() -> Self {
            let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let (modulus, exponent) = components(key.public_key().as_ref());
            let keys = HashMap::from([("k1".to_owned(), PublicKey { modulus, exponent })]);
            Self {
                key,
                verifier: Verifier {
                    issuer: ISSUER.to_owned(),
                    client_id: "client1".to_owned(),
                    keys: RwLock::new(keys),
                },
            }
        }

        fn sign(&self, header: Value, claims: Value) -> String {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let mut signature = vec![0; self.key.public_modulus_len()];
            self.key
                .sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    signed.as_bytes(),
                    &mut signature,
                )
                .unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        fn id_token(&self, change: impl FnOnce(&mut Value)) -> String {
            let mut claims = json!({
                "iss": ISSUER, "aud": "client1", "token_use": "id", "exp": 2_000,
                "cognito:username": "ann", "cognito:groups": ["labelers", "x"],
            });
            change(&mut claims);
            self.sign(json!({"alg": "RS256", "kid": "k1"}), claims)
        }
    }

    #[test]
    fn a_pool_token_for_this_client_passes_with_its_claims_flattened() {
        let pool = Pool::new();
        let claims = pool.verifier.verify(&pool.id_token(|_| {}), 1_000).unwrap();
        assert_eq!(claims["cognito:username"], "ann");
        assert_eq!(claims["cognito:groups"], "[labelers x]");
        let roles = GroupRoles::new("labeling-admins", "labelers");
        assert_eq!(
            roles.actor(|name| claims.get(name).map(String::as_str)),
            Some(Actor::labeler("ann"))
        );
        let access = pool.sign(
            json!({"alg": "RS256", "kid": "k1"}),
            json!({"iss": ISSUER, "client_id": "client1", "token_use": "access", "exp": 2_000,
                   "username": "ann"}),
        );
        assert!(pool.verifier.verify(&access, 1_000).is_ok());
    }

    #[test]
    fn forged_foreign_and_stale_tokens_are_refused() {
        let pool = Pool::new();
        let verify = |token: &str| pool.verifier.verify(token, 1_000).unwrap_err();
        assert_eq!(
            verify(&pool.id_token(|c| c["exp"] = json!(1_000))),
            Refusal::Expired
        );
        assert_eq!(
            verify(&pool.id_token(|c| c["aud"] = json!("other"))),
            Refusal::Audience
        );
        assert_eq!(
            verify(&pool.id_token(|c| c["token_use"] = json!("refresh"))),
            Refusal::Audience
        );
        assert_eq!(
            verify(&pool.id_token(|c| c["iss"] = json!(format!("{ISSUER}x")))),
            Refusal::Issuer
        );
        // The payload changed after signing: an admin's groups pasted into a labeler's token.
        let token = pool.id_token(|_| {});
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims = json!({"iss": ISSUER, "aud": "client1", "token_use": "id",
            "exp": 2_000, "cognito:username": "ann", "cognito:groups": ["labeling-admins"]});
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
            parts[2]
        );
        assert_eq!(verify(&forged), Refusal::Signature);
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k1"}).to_string()),
            parts[1]
        );
        assert_eq!(verify(&unsigned), Refusal::Algorithm);
        let other_key = pool.sign(json!({"alg": "RS256", "kid": "k2"}), json!({}));
        assert_eq!(verify(&other_key), Refusal::UnknownKey("k2".to_owned()));
        for garbage in ["a.b.c", "..", "a.b", "a.b.c.d", ""] {
            assert_eq!(verify(garbage), Refusal::Malformed, "{garbage}");
        }
    }

    #[test]
    fn settings_check_the_pool_id_and_derive_the_endpoint() {
        let aws = CognitoSettings::new("eu-west-1_AbC123", "client1", None).unwrap();
        assert_eq!(aws.endpoint, "https://cognito-idp.eu-west-1.amazonaws.com/");
        assert_eq!(
            aws.keys_url(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123/.well-known/jwks.json"
        );
        assert_eq!(
            aws.issuer(),
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
        );
        let emulator =
            CognitoSettings::new("us-east-1_abc", "c1", Some("http://127.0.0.1:5000")).unwrap();
        assert_eq!(
            emulator.keys_url(),
            "http://127.0.0.1:5000/us-east-1_abc/.well-known/jwks.json"
        );
        for pool in [
            "",
            "abc",
            "_abc",
            "eu-west-1_",
            "eu-west-1_a/b",
            "EU_abc",
            "a_b_c",
        ] {
            assert!(CognitoSettings::new(pool, "c1", None).is_err(), "{pool}");
        }
        assert!(CognitoSettings::new("eu-west-1_abc", "c 1", None).is_err());
        assert!(CognitoSettings::new("eu-west-1_abc", "c1", Some("http://a/b")).is_err());
        assert!(parse_key_set(br#"{"keys": []}"#).is_err());
        assert!(parse_key_set(b"<html>").is_err());
    }
}
