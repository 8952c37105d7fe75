//! Operations only the local server (`labeling-local`) routes: its users and its signed blob
//! URLs. They are declared here, with no handler behind them, so that the one document every
//! deployment serves describes them as it always has (elsewhere they answer 404, as their
//! descriptions say); `tests/tests/openapi_routes.rs` asks the local server that they are routed.

use utoipa::Modify;
use utoipa::openapi::{ContentBuilder, RefOr};

#[allow(unused_imports)]
use super::responses::{
    BadRequest, Conflict, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable, Unprocessable,
};
#[allow(unused_imports)]
use crate::dto::{CreatedUser, NewUser};

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    operation_id = "createUser",
    summary = "Create a user and return its bearer token (admin; local deployment only).",
    description = "Only the local deployment keeps its own users; elsewhere this route does not exist (404). The token is shown once; only its hash is stored.",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user was created.", body = CreatedUser),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
pub(super) fn create_user() {}

#[utoipa::path(
    get,
    path = "/blobs/{bucket}/{key}",
    tag = "blobs",
    operation_id = "getBlob",
    summary = "Download an object through a signed URL (as handed out in `image_url`).",
    description = "Served only by the local deployment (elsewhere 404); signed URLs point at the cloud store directly.",
    security(),
    params(
        ("bucket" = String, Path, description = "Bucket name, percent-encoded."),
        ("key" = String, Path, description = "Object key; it takes the rest of the path and may span several segments (`a/b/c.jpg`), each percent-encoded."),
        ("expires" = u64, Query, description = "Expiry of the signed URL, epoch milliseconds."),
        ("signature" = String, Query, description = "Hex HMAC-SHA256 over method, bucket, key and expires; a bad or expired signature is a 403."),
    ),
    responses(
        (status = 200, description = "The object's bytes; the content type follows the key's extension."),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
pub(super) fn get_blob() {}

#[utoipa::path(
    put,
    path = "/blobs/{bucket}/{key}",
    tag = "blobs",
    operation_id = "putBlob",
    summary = "Upload an object through a signed PUT URL (local deployment only).",
    description = "Send exactly the headers the upload slot lists (`headers` of `POST /datasets/{name}/uploads`): a missing or different `Content-Type`, or a missing `x-amz-checksum-sha256` where the URL was signed with one, is a 403 naming the header; a body whose SHA-256 is not the signed one is a 400 (`bad-digest`, S3's BadDigest). Nothing is stored either way.",
    security(),
    params(
        ("bucket" = String, Path, description = "Bucket name, percent-encoded."),
        ("key" = String, Path, description = "Object key; it takes the rest of the path and may span several segments (`a/b/c.jpg`), each percent-encoded."),
        ("expires" = u64, Query, description = "Expiry of the signed URL, epoch milliseconds."),
        ("content-type" = String, Query, description = "The content type the URL was signed for; the request must send it as its `Content-Type`."),
        ("x-amz-checksum-sha256" = Option<String>, Query, description = "Base64 SHA-256 the URL was signed with, if any; the request must send it as its `x-amz-checksum-sha256` header and its body must have this digest."),
        ("signature" = String, Query, description = "Hex HMAC-SHA256 over method, bucket, key, expires, content type and checksum; a bad or expired signature is a 403."),
    ),
    request_body(content = Vec<u8>, content_type = "*/*", description = "The object's bytes."),
    responses(
        (status = 200, description = "Stored."),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
#[allow(dead_code)]
pub(super) fn put_blob() {}

/// A blob's bytes are whatever was stored: the document names the media types without a schema
/// (which `#[utoipa::path]` cannot say).
pub(super) struct BlobContent;

impl Modify for BlobContent {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(item) = openapi.paths.paths.get_mut("/blobs/{bucket}/{key}") else {
            return;
        };
        let Some(get) = item.get.as_mut() else {
            return;
        };
        if let Some(RefOr::T(ok)) = get.responses.responses.get_mut("200") {
            for media in [
                "image/*",
                "application/json",
                "application/x-ndjson",
                "application/octet-stream",
            ] {
                ok.content
                    .insert(media.to_owned(), RefOr::T(ContentBuilder::new().build()));
            }
        }
    }
}
