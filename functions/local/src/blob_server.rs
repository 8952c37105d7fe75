//! The local server's signed blob URLs, `/blobs/{bucket}/{key}`: what presigned S3 URLs are on
//! AWS. Objects stream in and out of the folder store with flat memory, and only what the
//! service hands out is served: reads from the data folder's buckets and from the folders that
//! live projects use as sources, writes only into the datasets folder that uploads go to. A
//! valid signature is not enough: whoever got hold of the signing key must still not read
//! `/etc/shadow` or write outside the data folder.
//!
//! A signed PUT carries what S3 checks: the `Content-Type` it was signed for (another value, or
//! none, is a 403 naming the header, as S3's `SignatureDoesNotMatch`) and, when signed, the
//! `x-amz-checksum-sha256` of its body (a body with another digest is S3's 400 `BadDigest`).
//! Either way nothing is written.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use labeling_api::problem::Problem;
use labeling_api::routes::QueryParams;
use labeling_core::domain::source::Source;
use labeling_core::ports::BlobError;
use labeling_core::ports::blobs::CHECKSUM_SHA256_HEADER;
use labeling_core::usecases::datasets::{content_type_of, is_upload_key};
use labeling_core::{Actor, Service};
use labeling_embedded::FolderBlobs;
use labeling_embedded::folder_blobs::{SignedHeaders, SignedMethod, sha256_header_value};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

/// The largest object one signed PUT may carry: S3's limit for a single PUT, so nothing works
/// locally that AWS would refuse.
pub const MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// How long the list of folders that projects read from is trusted before it is read again.
const SOURCES_TTL: Duration = Duration::from_secs(5);

/// The `/blobs` routes and what they need.
pub struct BlobServer {
    folder: Arc<FolderBlobs>,
    service: Arc<Service>,
    max_upload_bytes: u64,
    /// The `file://` sources of live projects, and when they were read.
    file_sources: Mutex<Option<(Instant, Arc<Vec<Source>>)>>,
}

impl BlobServer {
    pub fn new(folder: Arc<FolderBlobs>, service: Arc<Service>) -> Self {
        Self {
            folder,
            service,
            max_upload_bytes: MAX_UPLOAD_BYTES,
            file_sources: Mutex::new(None),
        }
    }

    /// Lowers the upload limit (tests show the 413 without sending gigabytes).
    pub fn with_max_upload_bytes(mut self, max: u64) -> Self {
        self.max_upload_bytes = max;
        self
    }

    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/blobs/{bucket}/{*key}",
                get(get_blob)
                    .put(put_blob)
                    // Uploads stream to disk under their own limit, checked below.
                    .layer(DefaultBodyLimit::disable()),
            )
            .with_state(self)
    }

    /// True when `bucket`/`key` may be read through a signed URL: any bucket of the data folder,
    /// and a local folder only where a live project takes its images from it. A key the cached
    /// sources do not admit is checked against the projects again, so a project created a
    /// moment ago is served at once (only a signed URL gets this far).
    async fn readable(&self, bucket: &str, key: &str) -> Result<bool, Problem> {
        if !bucket.starts_with("file://") {
            // Bucket names with a path separator or a leading dot are refused by the store.
            return Ok(true);
        }
        let admits = |sources: &[Source]| {
            sources
                .iter()
                .any(|source| source.bucket() == bucket && source.admits(key))
        };
        let cached = self
            .file_sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let age = cached.as_ref().map(|(read_at, _)| read_at.elapsed());
        if let Some((_, sources)) = &cached
            && age.is_some_and(|age| age < SOURCES_TTL)
            && admits(sources)
        {
            return Ok(true);
        }
        let sources = Arc::new(self.read_file_sources().await?);
        *self
            .file_sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), sources.clone()));
        Ok(admits(&sources))
    }

    async fn read_file_sources(&self) -> Result<Vec<Source>, Problem> {
        let projects = self
            .service
            .projects()
            .list_projects(&Actor::admin("blob-server"))
            .await
            .map_err(|error| Problem::from_domain(&error))?;
        Ok(projects
            .iter()
            .filter(|project| project.source.starts_with("file://"))
            .filter_map(|project| Source::parse(&project.source, true).ok())
            .collect())
    }

    /// True when a signed PUT may write `bucket`/`key`: uploads go to the datasets folder of the
    /// service's own bucket, and nowhere else.
    fn writable(&self, bucket: &str, key: &str) -> bool {
        bucket == self.service.config().system_bucket && is_upload_key(key)
    }
}

/// The query of a signed URL; a malformed one is refused by [`QueryParams`] as a 400 naming
/// the parameter, a missing one as a forged URL.
#[derive(serde::Deserialize)]
struct Signature {
    expires: Option<i64>,
    signature: Option<String>,
    /// The content type a PUT was signed for.
    #[serde(rename = "content-type")]
    content_type: Option<String>,
    /// The base64 SHA-256 a PUT's body was signed with.
    #[serde(rename = "x-amz-checksum-sha256")]
    sha256: Option<String>,
}

impl Signature {
    fn headers(&self) -> SignedHeaders<'_> {
        SignedHeaders {
            content_type: self.content_type.as_deref(),
            sha256: self.sha256.as_deref(),
        }
    }
}

fn verified(
    server: &BlobServer,
    method: SignedMethod,
    bucket: &str,
    key: &str,
    query: &Signature,
) -> Result<(), Problem> {
    let (Some(expires), Some(signature)) = (query.expires, query.signature.as_deref()) else {
        return Err(Problem::forbidden(
            "a signed URL needs its expires and signature parameters",
        ));
    };
    if server
        .folder
        .verify(method, bucket, key, expires, query.headers(), signature)
    {
        Ok(())
    } else {
        Err(Problem::forbidden("the signed URL is invalid or expired"))
    }
}

fn no_such_object() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "no such object")
}

fn unavailable(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "the blob store failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the blob store is unavailable; retry shortly",
    )
}

fn too_large(max: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!("an upload may hold at most {max} bytes"),
    )
}

/// Refuses a request whose `name` header is missing or differs from the signed `value`, as S3
/// refuses a signed header sent with another value (403 `SignatureDoesNotMatch`), but naming
/// the header and the value to send.
fn carries_signed_header(headers: &HeaderMap, name: &str, value: &str) -> Result<(), Problem> {
    let sent = headers
        .get(name)
        .map(|sent| sent.to_str().unwrap_or("(not text)"));
    if sent == Some(value) {
        return Ok(());
    }
    let sent = sent.map_or_else(|| "none".to_owned(), |sent| format!("{sent:?}"));
    Err(Problem::forbidden(&format!(
        "this upload URL was signed for the header {name}: {value}; the request sent {sent} \
         (send the headers the upload response lists); nothing was stored"
    )))
}

#[tracing::instrument(skip(server, query), fields(bucket = %bucket))]
async fn get_blob(
    State(server): State<Arc<BlobServer>>,
    Path((bucket, key)): Path<(String, String)>,
    QueryParams(query): QueryParams<Signature>,
) -> Result<Response, Problem> {
    verified(&server, SignedMethod::Get, &bucket, &key, &query)?;
    if !server.readable(&bucket, &key).await? {
        return Err(Problem::forbidden(
            "this server serves only its own buckets and the folders projects read from",
        ));
    }
    let (file, size) = match server.folder.open_object(&bucket, &key).await {
        Ok(opened) => opened,
        Err(BlobError::NotFound { .. } | BlobError::NoSuchBucket(_) | BlobError::Invalid(_)) => {
            return Err(no_such_object());
        }
        Err(error) => return Err(unavailable(error)),
    };
    // A 64 KiB buffer at a time, however large the object: six downloads of a 400 MB export
    // no longer take the server to gigabytes.
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        tokio::fs::File::from_std(file),
        64 * 1024,
    ));
    Ok((
        [
            (header::CONTENT_TYPE, content_type_of(&key).to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CACHE_CONTROL, "private, max-age=600".to_owned()),
        ],
        body,
    )
        .into_response())
}

#[tracing::instrument(skip(server, query, headers, body), fields(bucket = %bucket))]
async fn put_blob(
    State(server): State<Arc<BlobServer>>,
    Path((bucket, key)): Path<(String, String)>,
    QueryParams(query): QueryParams<Signature>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Problem> {
    verified(&server, SignedMethod::Put, &bucket, &key, &query)?;
    if !server.writable(&bucket, &key) {
        return Err(Problem::forbidden(
            "signed uploads go only into the datasets folder of the service's bucket",
        ));
    }
    // Every PUT this server signs names its content type; a URL without one was not made here
    // for an upload.
    let Some(content_type) = query.content_type.as_deref() else {
        return Err(Problem::forbidden(
            "this URL was not signed for an upload (it names no content type)",
        ));
    };
    carries_signed_header(&headers, "content-type", content_type)?;
    if let Some(sha256) = query.sha256.as_deref() {
        carries_signed_header(&headers, CHECKSUM_SHA256_HEADER, sha256)?;
    }
    let max = server.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large(max));
    }
    let mut pending = match server.folder.create_object(&bucket, &key).await {
        Ok(pending) => pending,
        Err(BlobError::Invalid(_)) => return Err(no_such_object()),
        Err(error) => return Err(unavailable(error)),
    };
    let written = pending
        .file()
        .and_then(|file| file.try_clone())
        .map_err(unavailable)?;
    let mut file = tokio::fs::File::from_std(written);
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    let mut hasher = query.sha256.is_some().then(sha2::Sha256::new);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-body",
                format!("the upload was interrupted: {error}"),
            )
        })?;
        received += chunk.len() as u64;
        if received > max {
            // Dropping `pending` removes what was written.
            return Err(too_large(max));
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
        }
        file.write_all(&chunk).await.map_err(unavailable)?;
    }
    file.flush().await.map_err(unavailable)?;
    drop(file);
    if let (Some(hasher), Some(signed)) = (hasher, query.sha256.as_deref()) {
        let digest: [u8; 32] = hasher.finalize().into();
        if sha256_header_value(&digest) != signed {
            // Dropping `pending` removes what was written.
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-digest",
                format!(
                    "the body's SHA-256 is not the {CHECKSUM_SHA256_HEADER} this upload was \
                     signed with (S3's BadDigest); nothing was stored"
                ),
            ));
        }
    }
    tokio::task::spawn_blocking(move || pending.commit())
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
    tracing::info!(bytes = received, "stored an upload");
    // The local store's object-created event: projects watching this bucket refresh.
    if let Err(error) = server
        .service
        .refreshes()
        .objects_created(&[(bucket, key)])
        .await
    {
        tracing::warn!(%error, "could not notify projects of a new object");
    }
    Ok(StatusCode::OK)
}
