//! The local server's signed blob URLs, `/blobs/{bucket}/{key}`: what presigned S3 URLs are on
//! AWS. Objects stream in and out of the folder store with flat memory, and only what the
//! service hands out is served: reads from the data folder's buckets and from the folders that
//! live projects use as sources, writes only into the datasets folder that uploads go to. A
//! valid signature is not enough: whoever got hold of the signing key must still not read
//! `/etc/shadow` or write outside the data folder.

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
use labeling_core::usecases::datasets::{content_type_of, is_upload_key};
use labeling_core::{Actor, Service};
use labeling_embedded::FolderBlobs;
use labeling_embedded::folder_blobs::SignedMethod;
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
}

fn verified(
    server: &BlobServer,
    method: SignedMethod,
    bucket: &str,
    key: &str,
    query: Signature,
) -> Result<(), Problem> {
    let (Some(expires), Some(signature)) = (query.expires, query.signature) else {
        return Err(Problem::forbidden(
            "a signed URL needs its expires and signature parameters",
        ));
    };
    if server
        .folder
        .verify(method, bucket, key, expires, &signature)
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

#[tracing::instrument(skip(server, query), fields(bucket = %bucket))]
async fn get_blob(
    State(server): State<Arc<BlobServer>>,
    Path((bucket, key)): Path<(String, String)>,
    QueryParams(query): QueryParams<Signature>,
) -> Result<Response, Problem> {
    verified(&server, SignedMethod::Get, &bucket, &key, query)?;
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
    verified(&server, SignedMethod::Put, &bucket, &key, query)?;
    if !server.writable(&bucket, &key) {
        return Err(Problem::forbidden(
            "signed uploads go only into the datasets folder of the service's bucket",
        ));
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
        file.write_all(&chunk).await.map_err(unavailable)?;
    }
    file.flush().await.map_err(unavailable)?;
    drop(file);
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
