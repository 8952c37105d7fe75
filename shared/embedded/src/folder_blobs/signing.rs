//! Signed URLs of the local server: an HMAC-SHA256 over method, bucket, key, expiry and, for a
//! PUT, the content type and SHA-256 the request must carry. Those two travel in the URL's query
//! too, so the server can name the header a request got wrong, as S3 answers
//! `SignatureDoesNotMatch` for a signed header sent with another value.

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use labeling_core::ports::blobs::CHECKSUM_SHA256_HEADER;
use sha2::Sha256;

use super::FolderBlobs;

/// What a verified signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedMethod {
    Get,
    Put,
}

impl SignedMethod {
    fn as_str(self) -> &'static str {
        match self {
            SignedMethod::Get => "GET",
            SignedMethod::Put => "PUT",
        }
    }
}

/// The header values a signed URL was made for (none for a GET).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    pub content_type: Option<&'a str>,
    /// Base64 of the SHA-256 digest, as in S3's `x-amz-checksum-sha256`.
    pub sha256: Option<&'a str>,
}

/// A SHA-256 digest as S3's `x-amz-checksum-sha256` header carries it.
pub fn sha256_header_value(digest: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Percent-encodes everything but unreserved characters (and `/` when `keep_slash`).
fn percent_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && byte == b'/')
        {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl FolderBlobs {
    fn mac(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        expires: i64,
        headers: SignedHeaders<'_>,
    ) -> Option<Hmac<Sha256>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).ok()?;
        // A line per field: no field holds a newline (keys with control characters are
        // refused, content types and base64 have none), so fields cannot run into each other.
        mac.update(
            format!(
                "{}\n{bucket}\n{key}\n{expires}\n{}\n{}",
                method.as_str(),
                headers.content_type.unwrap_or(""),
                headers.sha256.unwrap_or("")
            )
            .as_bytes(),
        );
        Some(mac)
    }

    pub(super) fn presign(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        headers: SignedHeaders<'_>,
        expires_in: Duration,
    ) -> String {
        let expires = self.clock.now() + i64::try_from(expires_in.as_millis()).unwrap_or(0);
        let signature = self
            .mac(method, bucket, key, expires, headers)
            .map(|mac| hex::encode(mac.finalize().into_bytes()))
            .unwrap_or_default();
        let base = self
            .public_base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut url = format!(
            "{base}/blobs/{}/{}?expires={expires}",
            percent_encode(bucket, false),
            percent_encode(key, true)
        );
        if let Some(content_type) = headers.content_type {
            url.push_str(&format!(
                "&content-type={}",
                percent_encode(content_type, false)
            ));
        }
        if let Some(sha256) = headers.sha256 {
            url.push_str(&format!(
                "&{CHECKSUM_SHA256_HEADER}={}",
                percent_encode(sha256, false)
            ));
        }
        url.push_str(&format!("&signature={signature}"));
        url
    }

    /// The headers a signed PUT must carry, by their lower-case names.
    pub(super) fn put_headers(headers: SignedHeaders<'_>) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if let Some(content_type) = headers.content_type {
            map.insert("content-type".to_owned(), content_type.to_owned());
        }
        if let Some(sha256) = headers.sha256 {
            map.insert(CHECKSUM_SHA256_HEADER.to_owned(), sha256.to_owned());
        }
        map
    }

    /// Checks a signed URL's signature and expiry (constant-time comparison), with the header
    /// values its query names. The caller then compares the request's headers to those.
    pub fn verify(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        expires: i64,
        headers: SignedHeaders<'_>,
        signature: &str,
    ) -> bool {
        if expires < self.clock.now() {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        self.mac(method, bucket, key, expires, headers)
            .is_some_and(|mac| mac.verify_slice(&given).is_ok())
    }
}
