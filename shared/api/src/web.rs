//! The web app (`web/`, built into `web/dist/`) served by the same router as the API: the
//! files are embedded in the binary, so one `labeling` process or one Lambda serves both, with
//! no extra toolchain at run time and no second origin (the app calls the API on its own
//! origin, with the same tokens). `/app/config.json` tells the app how users sign in.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::problem::Problem;
use crate::routes::AppState;

/// How the web app signs users in, as `/app/config.json` tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "sign_in", rename_all = "snake_case")]
pub enum SignIn {
    /// With a user's bearer token (the local server's users file).
    Token,
    /// With a Cognito user name and password: `InitiateAuth` (`USER_PASSWORD_AUTH`, then
    /// `REFRESH_TOKEN_AUTH` before the tokens expire) on `endpoint` for the app client
    /// `client_id`, straight from the browser.
    Cognito { endpoint: String, client_id: String },
}

impl SignIn {
    /// Cognito sign-in, refusing an endpoint or client id that could break out of the content
    /// security policy or the JSON (they come from configuration, but a typo should not
    /// produce a policy that lets the page call anywhere).
    pub fn cognito(endpoint: &str, client_id: &str) -> Result<Self, String> {
        let endpoint = endpoint.trim_end_matches('/');
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .ok_or_else(|| format!("the Cognito endpoint {endpoint:?} is not an http(s) URL"))?;
        let host_allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
        if rest.is_empty() || !rest.chars().all(host_allowed) {
            return Err(format!(
                "the Cognito endpoint {endpoint:?} must be scheme://host[:port], with no path"
            ));
        }
        if client_id.is_empty()
            || client_id.len() > 128
            || !client_id.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "the Cognito app client id {client_id:?} is not letters and digits"
            ));
        }
        Ok(Self::Cognito {
            endpoint: format!("{endpoint}/"),
            client_id: client_id.to_owned(),
        })
    }

    /// The page's content security policy: only the app's own scripts and styles run; images
    /// may come from the signed URLs of another origin (S3 on AWS, a public URL locally); the
    /// API is called on this origin, uploads go to signed URLs (S3's, over https), and sign-in
    /// to the Cognito endpoint (named when it is plain http, as an emulator is).
    fn content_security_policy(&self) -> String {
        let sign_in = match self {
            Self::Cognito { endpoint, .. } if endpoint.starts_with("http://") => {
                format!(" {}", endpoint.trim_end_matches('/'))
            }
            _ => String::new(),
        };
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; \
             img-src 'self' https: http: data: blob:; connect-src 'self' https:{sign_in}; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
    }
}

/// One embedded file: its bytes, content type and entity tag.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    bytes: include_bytes!("../../../web/dist/index.html"),
    content_type: "text/html; charset=utf-8",
};

const ASSETS: &[(&str, Asset)] = &[
    (
        "app.js",
        Asset {
            bytes: include_bytes!("../../../web/dist/app.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "app.css",
        Asset {
            bytes: include_bytes!("../../../web/dist/app.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
];

/// `GET /`, `GET /app/config.json` and `GET /app/{file}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app/config.json", get(config))
        .route("/app/{file}", get(asset))
}

async fn index(State(state): State<AppState>, request: HeaderMap) -> Response {
    serve(&INDEX, &request, &state.sign_in)
}

async fn config(State(state): State<AppState>) -> Response {
    let mut response = Json(state.sign_in.as_ref()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn asset(
    State(state): State<AppState>,
    Path(file): Path<String>,
    request: HeaderMap,
) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((_, asset)) => serve(asset, &request, &state.sign_in),
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such file of the web app",
        )
        .into_response(),
    }
}

/// A strong entity tag from the content (FNV-1a), so a browser revalidates cheaply and never
/// keeps a stale app after an upgrade.
fn etag(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}-{}\"", bytes.len())
}

fn serve(asset: &Asset, request: &HeaderMap, sign_in: &SignIn) -> Response {
    let tag = etag(asset.bytes);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|candidate| candidate.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(policy) = HeaderValue::from_str(&sign_in.content_security_policy()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Signed image URLs must not leak to other sites through the Referer header.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_tag_changes_with_the_content() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"a"), etag(b"a"));
        assert!(etag(INDEX.bytes).starts_with('"'));
    }

    #[test]
    fn a_cognito_endpoint_is_a_bare_origin_and_joins_the_policy_only_over_http() {
        let aws = SignIn::cognito("https://cognito-idp.eu-west-1.amazonaws.com", "abc123").unwrap();
        assert_eq!(
            aws,
            SignIn::Cognito {
                endpoint: "https://cognito-idp.eu-west-1.amazonaws.com/".into(),
                client_id: "abc123".into()
            }
        );
        assert!(
            aws.content_security_policy()
                .contains("connect-src 'self' https:;")
        );
        let emulator = SignIn::cognito("http://127.0.0.1:5000/", "abc").unwrap();
        assert!(
            emulator
                .content_security_policy()
                .contains("connect-src 'self' https: http://127.0.0.1:5000;")
        );
        for endpoint in [
            "ftp://x",
            "https://",
            "https://a.example/path",
            "https://a.example; script-src *",
            "cognito-idp.amazonaws.com",
        ] {
            assert!(SignIn::cognito(endpoint, "abc").is_err(), "{endpoint}");
        }
        for client in ["", "a b", "a\"b", &"a".repeat(129)] {
            assert!(
                SignIn::cognito("https://a.example", client).is_err(),
                "{client}"
            );
        }
    }
}
