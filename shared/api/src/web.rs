//! The web app (`web/`, built into `web/dist/`) served by the same router as the API: the
//! files are embedded in the binary, so one `labeling` process or one Lambda serves both, with
//! no extra toolchain at run time and no second origin (the app calls the API on its own
//! origin, with the same tokens).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::problem::Problem;

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

/// Only the app's own scripts and styles run; images may come from the signed URLs of another
/// origin (S3 on AWS, a public URL locally); the API is called on this origin, and uploads go
/// to signed URLs (S3's, over https).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' https: http: data: blob:; connect-src 'self' https:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` and `GET /app/{file}`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/app/{file}", get(asset))
}

async fn index(request: HeaderMap) -> Response {
    serve(&INDEX, &request)
}

async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    match ASSETS.iter().find(|(name, _)| *name == file) {
        Some((_, asset)) => serve(asset, &request),
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

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
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
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
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
}
