//! The `Blobs` port on S3. Buckets are the `bucket` arguments of the port.
//!
//! S3 itself enforces the port's guarantees; this adapter maps errors onto the port's, clips
//! ranges as the port says (a range starting past the end reads as empty), and refuses to
//! complete a multipart upload with a part under 5 MiB that is not the last one when it knows
//! the part sizes (it remembers the parts it uploaded), so an emulator that does not enforce
//! the minimum behaves as S3 does. It never calls `ListParts`.
//!
//! Listings ask for `EncodingType=url` and decode each key: XML 1.0 cannot carry most control
//! characters, so without it one key holding one makes every page that lists it unparseable.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart as S3CompletedPart,
    EncodingType,
};
use base64::Engine as _;
use labeling_core::ports::blobs::{MAX_LIST_KEYS, MIN_PART_BYTES};
use labeling_core::ports::{
    BlobError, Blobs, ByteRange, CompletedPart, ListPage, ObjectChecksum, ObjectMeta, PresignedPut,
};

use crate::bucket_regions::{BucketRegions, in_bucket_region, named_region};
use crate::error::failure;

pub struct S3Blobs {
    regions: BucketRegions,
    /// Sizes of the parts this process uploaded, by upload id and part number.
    part_sizes: Mutex<HashMap<String, HashMap<u32, u64>>>,
}

impl S3Blobs {
    /// `client` signs requests and presigns URLs.
    pub fn new(client: Client) -> Self {
        Self {
            regions: BucketRegions::new(client),
            part_sizes: Mutex::new(HashMap::new()),
        }
    }

    /// The client of the configured region.
    pub fn client(&self) -> &Client {
        self.regions.home()
    }

    /// The client to presign a URL for `bucket` with: URLs are signed for the bucket's region,
    /// learned by one `HeadBucket` (answered with the region even when refused) unless a
    /// request taught it already.
    async fn presigning_client(&self, bucket: &str) -> Client {
        if self.regions.known(bucket).is_none() {
            let answer = in_bucket_region!(&self.regions, bucket, |client| client
                .head_bucket()
                .bucket(bucket)
                .send());
            if let Err(error) = answer {
                let named = match &error {
                    SdkError::ServiceError(service) => named_region(service.raw()),
                    _ => None,
                };
                match named {
                    Some(region) => {
                        self.regions.learn(bucket, &region);
                    }
                    // S3 answered without naming another region (a missing bucket, say): ask
                    // no more; a request that is redirected later still teaches the region.
                    None if matches!(error, SdkError::ServiceError(_)) => {
                        self.regions
                            .confirm(bucket, &self.regions.region_used(bucket));
                    }
                    None => tracing::debug!(
                        bucket,
                        error = %aws_sdk_s3::error::DisplayErrorContext(&error),
                        "the bucket's region is unknown; signing for the configured one"
                    ),
                }
            }
        }
        self.regions.client_for(bucket)
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u32, u64>>> {
        // A panic while holding the lock cannot leave the map inconsistent: use it anyway.
        self.part_sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses what S3 refuses, from the sizes of the parts this process uploaded.
    fn check_parts(&self, upload_id: &str, parts: &[CompletedPart]) -> Result<(), BlobError> {
        if parts.is_empty() {
            return Err(BlobError::Invalid(
                "a multipart upload needs at least one part".to_owned(),
            ));
        }
        if parts
            .windows(2)
            .any(|pair| pair[0].part_number >= pair[1].part_number)
        {
            return Err(BlobError::Invalid(
                "parts must be given in ascending order".to_owned(),
            ));
        }
        let sizes = self.sizes();
        let Some(known) = sizes.get(upload_id) else {
            return Ok(());
        };
        for part in &parts[..parts.len() - 1] {
            if let Some(&size) = known.get(&part.part_number)
                && size < MIN_PART_BYTES as u64
            {
                return Err(BlobError::Invalid(format!(
                    "part {} is {size} bytes; every part but the last must be at least 5 MiB",
                    part.part_number
                )));
            }
        }
        Ok(())
    }
}

/// Maps an S3 error: missing objects and buckets by their codes, invalid requests by theirs,
/// anything else is unavailable.
fn blob_error<E>(operation: &'static str, bucket: &str, key: &str, error: SdkError<E>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = match &error {
        SdkError::ServiceError(service) => Some(service.raw().status().as_u16()),
        _ => None,
    };
    match (error.code(), status) {
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => BlobError::NotFound {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        (Some("NoSuchBucket"), _) => BlobError::NoSuchBucket(bucket.to_owned()),
        (
            Some(
                code @ ("NoSuchUpload" | "InvalidPart" | "InvalidPartOrder" | "EntityTooSmall"
                | "InvalidRange" | "InvalidArgument" | "InvalidRequest" | "KeyTooLongError"),
            ),
            _,
        ) => BlobError::Invalid(format!(
            "{operation} {bucket}/{key}: {code}: {}",
            error.message().unwrap_or_default()
        )),
        _ => BlobError::Unavailable(failure(operation, error)),
    }
}

/// Decodes a key of a listing asked with `EncodingType=url`: `%XX` escapes, and `+` for a space
/// (S3 writes a space as `+` and a plus as `%2B`; moto writes `%20`). `None` when an escape is
/// broken or the bytes are not UTF-8.
fn decode_listed_key(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(index + 1..index + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                index += 2;
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8(out).ok()
}

fn presigning(expires_in: Duration) -> Result<PresigningConfig, BlobError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| BlobError::Invalid(e.to_string()))
}

fn meta(key: &str, size: Option<i64>, etag: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        etag: etag.unwrap_or_default().trim_matches('"').to_owned(),
    }
}

#[async_trait]
impl Blobs for S3Blobs {
    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Vec<u8>, BlobError> {
        let range = match range {
            Some(ByteRange { start, end }) if end <= start => {
                // An empty range reads nothing, but a missing object is still missing.
                return match self.head(bucket, key).await? {
                    Some(_) => Ok(Vec::new()),
                    None => Err(BlobError::NotFound {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    }),
                };
            }
            Some(ByteRange { start, end }) => Some(format!("bytes={start}-{}", end - 1)),
            None => None,
        };
        let response = in_bucket_region!(&self.regions, bucket, |client| client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_range(range.clone())
            .send());
        let output = match response {
            Ok(output) => output,
            // A range that starts past the end: S3 answers 416, the port reads nothing.
            Err(error) if error.code() == Some("InvalidRange") => return Ok(Vec::new()),
            Err(error) => return Err(blob_error("GetObject", bucket, key, error)),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Unavailable(failure("GetObject (reading the body)", e)))?;
        Ok(body.to_vec())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key, bytes = body.len()))]
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError> {
        in_bucket_region!(&self.regions, bucket, |client| client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body.clone()))
            .send())
        .map_err(|e| blob_error("PutObject", bucket, key, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        match in_bucket_region!(&self.regions, bucket, |client| client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send())
        {
            Ok(output) => Ok(Some(meta(key, output.content_length(), output.e_tag()))),
            Err(error) => match blob_error("HeadObject", bucket, key, error) {
                BlobError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// `HeadObject` with `ChecksumMode=ENABLED`: S3 answers the SHA-256 a PUT carried in
    /// `x-amz-checksum-sha256` (and checked against the body), never reading the object.
    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn head_checksum(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectChecksum>, BlobError> {
        match in_bucket_region!(&self.regions, bucket, |client| client
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send())
        {
            Ok(output) => Ok(Some(ObjectChecksum {
                meta: meta(key, output.content_length(), output.e_tag()),
                // A multipart object's checksum is a checksum of part checksums ("...-3"),
                // not the body's digest: it does not decode to 32 bytes and reads as none.
                sha256: output.checksum_sha256().and_then(decode_sha256),
            })),
            Err(error) => match blob_error("HeadObject", bucket, key, error) {
                BlobError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        match in_bucket_region!(&self.regions, bucket, |client| client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send())
        {
            Ok(_) => Ok(()),
            Err(error) => match blob_error("DeleteObject", bucket, key, error) {
                BlobError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, prefix = %prefix, start_after = ?start_after, max_keys = max_keys))]
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, BlobError> {
        let max_keys = max_keys.clamp(1, MAX_LIST_KEYS);
        let output = in_bucket_region!(&self.regions, bucket, |client| client
            .list_objects_v2()
            .bucket(bucket)
            .encoding_type(EncodingType::Url)
            .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
            .set_start_after(start_after.map(str::to_owned))
            .max_keys(i32::try_from(max_keys).unwrap_or(1000))
            .send())
        .map_err(|e| match blob_error("ListObjectsV2", bucket, prefix, e) {
            // A listing names no object: a 404 here can only be the bucket.
            BlobError::NotFound { .. } => BlobError::NoSuchBucket(bucket.to_owned()),
            other => other,
        })?;
        let mut objects = Vec::with_capacity(output.contents().len());
        let mut unreadable = 0;
        for object in output.contents() {
            let Some(encoded) = object.key() else {
                continue;
            };
            match decode_listed_key(encoded) {
                Some(key) => objects.push(meta(&key, object.size(), object.e_tag())),
                None => {
                    // S3 keys are UTF-8: only a broken answer gets here, and it must not fail
                    // the rest of the listing.
                    tracing::warn!(bucket, key = encoded, "a listed key does not decode");
                    unreadable += 1;
                }
            }
        }
        Ok(ListPage {
            objects,
            truncated: output.is_truncated().unwrap_or(false),
            unreadable,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn start_multipart(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, BlobError> {
        let output = in_bucket_region!(&self.regions, bucket, |client| client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .send())
        .map_err(|e| blob_error("CreateMultipartUpload", bucket, key, e))?;
        let upload_id = output.upload_id().ok_or_else(|| {
            BlobError::Unavailable(crate::error::invalid_answer(
                "CreateMultipartUpload",
                "no upload id in the answer",
            ))
        })?;
        self.sizes().insert(upload_id.to_owned(), HashMap::new());
        Ok(upload_id.to_owned())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key, part_number = part_number, bytes = body.len()))]
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: Vec<u8>,
    ) -> Result<String, BlobError> {
        let part = i32::try_from(part_number)
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| BlobError::Invalid("part numbers are 1 to 10,000".to_owned()))?;
        let size = body.len() as u64;
        let output = in_bucket_region!(&self.regions, bucket, |client| client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part)
            .body(ByteStream::from(body.clone()))
            .send())
        .map_err(|e| blob_error("UploadPart", bucket, key, e))?;
        let etag = output.e_tag().ok_or_else(|| {
            BlobError::Unavailable(crate::error::invalid_answer(
                "UploadPart",
                "no etag in the answer",
            ))
        })?;
        if let Some(sizes) = self.sizes().get_mut(upload_id) {
            sizes.insert(part_number, size);
        }
        Ok(etag.to_owned())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key, parts = parts.len()))]
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        self.check_parts(upload_id, &parts)?;
        let mut completed = Vec::with_capacity(parts.len());
        for part in parts {
            completed.push(
                S3CompletedPart::builder()
                    .part_number(i32::try_from(part.part_number).map_err(|_| {
                        BlobError::Invalid("part numbers are 1 to 10,000".to_owned())
                    })?)
                    .e_tag(part.etag)
                    .build(),
            );
        }
        in_bucket_region!(&self.regions, bucket, |client| client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed.clone()))
                    .build(),
            )
            .send())
        .map_err(|e| blob_error("CompleteMultipartUpload", bucket, key, e))?;
        self.sizes().remove(upload_id);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), BlobError> {
        let outcome = in_bucket_region!(&self.regions, bucket, |client| client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send());
        self.sizes().remove(upload_id);
        match outcome {
            Ok(_) => Ok(()),
            // Aborting twice, or after completion, is not an error (as in the embedded store).
            Err(error) if error.code() == Some("NoSuchUpload") => Ok(()),
            Err(error) => Err(blob_error("AbortMultipartUpload", bucket, key, error)),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        let request = self
            .presigning_client(bucket)
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(presigning(expires_in)?)
            .await
            .map_err(|e| blob_error("presigning GetObject", bucket, key, e))?;
        Ok(request.uri().to_owned())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(bucket = %bucket, key = %key))]
    async fn presign_put(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
        sha256: Option<[u8; 32]>,
        expires_in: Duration,
    ) -> Result<PresignedPut, BlobError> {
        // The content type and the checksum are signed headers: the uploader must send these
        // same values, so they are handed out with the URL. With the checksum S3 refuses a
        // body with another digest (BadDigest) and keeps it for `head_checksum`. The SDK also
        // signs `x-amz-sdk-checksum-algorithm: SHA256` (S3 accepts it; moto stores the
        // checksum only with it); every signed header is in `headers`, so clients send it too.
        let request = self
            .presigning_client(bucket)
            .await
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .set_checksum_algorithm(sha256.map(|_| ChecksumAlgorithm::Sha256))
            .set_checksum_sha256(sha256.map(|digest| base64_encode(&digest)))
            .presigned(presigning(expires_in)?)
            .await
            .map_err(|e| blob_error("presigning PutObject", bucket, key, e))?;
        Ok(PresignedPut {
            url: request.uri().to_owned(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
                .collect(),
        })
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A stored `ChecksumSHA256` as the digest's 32 bytes; `None` for anything else.
fn decode_sha256(value: &str) -> Option<[u8; 32]> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?
        .try_into()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_decode_from_the_url_encoding() {
        assert_eq!(
            decode_listed_key("a/b%01c.jpg").as_deref(),
            Some("a/b\u{1}c.jpg")
        );
        assert_eq!(
            decode_listed_key("a+b%2Bc.jpg").as_deref(),
            Some("a b+c.jpg")
        );
        assert_eq!(decode_listed_key("a%20b.jpg").as_deref(), Some("a b.jpg"));
        assert_eq!(
            decode_listed_key("caf%C3%A9.png").as_deref(),
            Some("café.png")
        );
        for broken in ["50%", "50%2", "50%zz", "%FF.png"] {
            assert_eq!(decode_listed_key(broken), None, "{broken}");
        }
    }

    /// A client that signs with fixed credentials and never sends a request: presigning is
    /// local, so the URL can be checked without AWS or an emulator.
    fn offline_blobs() -> S3Blobs {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build();
        S3Blobs::new(Client::from_conf(config))
    }

    fn signed_headers(url: &str) -> Vec<String> {
        let query = url.split_once('?').map_or("", |(_, query)| query);
        let signed = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("X-Amz-SignedHeaders="))
            .unwrap_or_else(|| panic!("no X-Amz-SignedHeaders in {url}"));
        signed.split("%3B").map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn a_presigned_put_signs_the_content_type_and_the_checksum_it_hands_out() {
        let blobs = offline_blobs();
        let hour = Duration::from_secs(3600);
        let digest = [7u8; 32];
        let put = blobs
            .presign_put(
                "photos",
                "datasets/d/a.jfif",
                "image/jpeg",
                Some(digest),
                hour,
            )
            .await
            .unwrap();
        let signed = signed_headers(&put.url);
        assert!(signed.contains(&"content-type".to_owned()), "{signed:?}");
        assert!(
            signed.contains(&"x-amz-checksum-sha256".to_owned()),
            "{signed:?}"
        );
        assert_eq!(put.headers["content-type"], "image/jpeg");
        assert_eq!(put.headers["x-amz-checksum-sha256"], base64_encode(&digest));
        for header in put.headers.keys() {
            assert!(
                signed.contains(header),
                "{header} is handed out but not signed: {signed:?}"
            );
        }

        let plain = blobs
            .presign_put("photos", "datasets/d/b.png", "image/png", None, hour)
            .await
            .unwrap();
        assert!(signed_headers(&plain.url).contains(&"content-type".to_owned()));
        assert_eq!(
            plain.headers.keys().collect::<Vec<_>>(),
            ["content-type"],
            "without a checksum only the content type is required"
        );
    }

    #[test]
    fn a_stored_checksum_decodes_only_when_it_is_a_whole_sha256() {
        let digest = [9u8; 32];
        assert_eq!(decode_sha256(&base64_encode(&digest)), Some(digest));
        // A multipart object's checksum of checksums.
        assert_eq!(
            decode_sha256(&format!("{}-3", base64_encode(&digest))),
            None
        );
        assert_eq!(decode_sha256(&base64_encode(&[1, 2, 3])), None);
    }
}
