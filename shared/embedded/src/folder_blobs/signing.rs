//! Signed URLs of the local server: an HMAC-SHA256 over method, bucket, key and expiry.

use std::sync::PoisonError;
use std::time::Duration;

use hmac::{Hmac, Mac};
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
    fn signature(&self, method: SignedMethod, bucket: &str, key: &str, expires: i64) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(format!("{}\n{bucket}\n{key}\n{expires}", method.as_str()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub(super) fn presign(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> String {
        let expires = self.clock.now() + i64::try_from(expires_in.as_millis()).unwrap_or(0);
        let signature = self.signature(method, bucket, key, expires);
        let base = self
            .public_base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        format!(
            "{base}/blobs/{}/{}?expires={expires}&signature={signature}",
            percent_encode(bucket, false),
            percent_encode(key, true)
        )
    }

    /// Checks a signed URL's signature and expiry (constant-time comparison).
    pub fn verify(
        &self,
        method: SignedMethod,
        bucket: &str,
        key: &str,
        expires: i64,
        signature: &str,
    ) -> bool {
        if expires < self.clock.now() {
            return false;
        }
        let Ok(given) = hex::decode(signature) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return false;
        };
        mac.update(format!("{}\n{bucket}\n{key}\n{expires}", method.as_str()).as_bytes());
        mac.verify_slice(&given).is_ok()
    }
}
