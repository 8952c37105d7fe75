//! Buckets in other regions. A project's source bucket may live in any region, but a request
//! signed for the wrong one is refused (301 `PermanentRedirect`, or 400
//! `AuthorizationHeaderMalformed`), and the Rust SDK follows no such redirect. S3 names the
//! bucket's region in the `x-amz-bucket-region` header of those answers (and of `HeadBucket`,
//! even a refused one), so the adapter learns it there, keeps one client per region, and
//! remembers each bucket's region for the life of the process. URLs are presigned with the
//! bucket's region, learned by one `HeadBucket` when nothing else taught it yet.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_config::Region;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;

/// The header in which S3 names a bucket's region.
const BUCKET_REGION_HEADER: &str = "x-amz-bucket-region";

/// The region named by an answer that refused a request for being sent to the wrong region.
pub(crate) fn redirect_region<E>(error: &SdkError<E, HttpResponse>) -> Option<String> {
    let raw = match error {
        SdkError::ServiceError(service) => service.raw(),
        SdkError::ResponseError(response) => response.raw(),
        _ => return None,
    };
    if !matches!(raw.status().as_u16(), 301 | 307 | 400) {
        return None;
    }
    named_region(raw)
}

/// The region a response names for its bucket, if it names one: in the header, else in the
/// `<Region>` of an `AuthorizationHeaderMalformed` error's body.
pub(crate) fn named_region(raw: &HttpResponse) -> Option<String> {
    let from_body = || {
        let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
        let start = body.find("<Region>")? + "<Region>".len();
        let end = start + body[start..].find("</Region>")?;
        Some(&body[start..end])
    };
    raw.headers()
        .get(BUCKET_REGION_HEADER)
        .or_else(from_body)
        .map(str::trim)
        .filter(|region| is_region_name(region))
        .map(str::to_owned)
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`: never a string that could make a host name.
fn is_region_name(text: &str) -> bool {
    (2..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// One client per region and the region of each bucket seen.
pub(crate) struct BucketRegions {
    home: Client,
    home_region: String,
    clients: Mutex<HashMap<String, Client>>,
    buckets: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BucketRegions {
    pub(crate) fn new(home: Client) -> Self {
        let home_region = home
            .config()
            .region()
            .map(|region| region.as_ref().to_owned())
            .unwrap_or_default();
        Self {
            home,
            home_region,
            clients: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn home(&self) -> &Client {
        &self.home
    }

    /// The region `bucket` is known to be in, if any request taught it.
    pub(crate) fn known(&self, bucket: &str) -> Option<String> {
        lock(&self.buckets).get(bucket).cloned()
    }

    /// The client for `bucket`: its region's once known, the home client until then.
    pub(crate) fn client_for(&self, bucket: &str) -> Client {
        match self.known(bucket) {
            Some(region) if region != self.home_region => self.client_in(&region),
            _ => self.home.clone(),
        }
    }

    /// Records that `bucket` is in `region` and returns the client for it.
    pub(crate) fn learn(&self, bucket: &str, region: &str) -> Client {
        let previous = lock(&self.buckets).insert(bucket.to_owned(), region.to_owned());
        if previous.as_deref() != Some(region) {
            tracing::info!(bucket, region, "the bucket is in another region");
        }
        self.client_in(region)
    }

    /// Records that a request for `bucket` succeeded with the client of `region` (the bucket is
    /// there), unless its region is known already.
    pub(crate) fn confirm(&self, bucket: &str, region: &str) {
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(bucket) {
            buckets.insert(bucket.to_owned(), region.to_owned());
        }
    }

    /// The region of the client that `client_for(bucket)` returns.
    pub(crate) fn region_used(&self, bucket: &str) -> String {
        self.known(bucket)
            .unwrap_or_else(|| self.home_region.clone())
    }

    fn client_in(&self, region: &str) -> Client {
        if region == self.home_region {
            return self.home.clone();
        }
        lock(&self.clients)
            .entry(region.to_owned())
            .or_insert_with(|| {
                Client::from_conf(
                    self.home
                        .config()
                        .to_builder()
                        .region(Region::new(region.to_owned()))
                        .build(),
                )
            })
            .clone()
    }
}

/// Sends a request with the client for `$bucket`; when S3 answers that the bucket is in
/// another region, learns that region and sends it once more with that region's client.
/// `$client` names the client inside `$call`, which must be an expression that can be built
/// twice (clone what it consumes).
macro_rules! in_bucket_region {
    ($regions:expr, $bucket:expr, |$client:ident| $call:expr) => {{
        let regions: &$crate::bucket_regions::BucketRegions = $regions;
        let bucket: &str = $bucket;
        let used = regions.region_used(bucket);
        let first = {
            let $client = regions.client_for(bucket);
            $call.await
        };
        match first {
            Ok(output) => {
                regions.confirm(bucket, &used);
                Ok(output)
            }
            Err(error) => match $crate::bucket_regions::redirect_region(&error) {
                Some(region) if region != used => {
                    let $client = regions.learn(bucket, &region);
                    $call.await
                }
                _ => Err(error),
            },
        }
    }};
}

pub(crate) use in_bucket_region;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use aws_config::BehaviorVersion;
    use aws_sdk_s3::config::Credentials;
    use labeling_core::ports::Blobs;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::s3_blobs::S3Blobs;

    /// An S3 endpoint whose buckets all live in eu-west-1: a request signed for another region
    /// gets S3's 301 with the bucket's region in its header. Logs "<signed region> <method>".
    async fn far_away_s3() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let read = socket.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        request.extend_from_slice(&chunk[..read]);
                    }
                    let request = String::from_utf8_lossy(&request).into_owned();
                    let method = request.split(' ').next().unwrap_or("").to_owned();
                    let signed_far = request.contains("/eu-west-1/s3/aws4_request");
                    let region = if signed_far { "eu-west-1" } else { "other" };
                    seen.lock().unwrap().push(format!("{region} {method}"));
                    let body = match (signed_far, method.as_str()) {
                        (_, "HEAD") => String::new(),
                        (false, _) => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>\
                            <Code>PermanentRedirect</Code><Message>The bucket you are \
                            attempting to access must be addressed using the specified \
                            endpoint.</Message></Error>"
                            .to_owned(),
                        (true, _) => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                            <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                            <Name>far</Name><Prefix></Prefix><KeyCount>1</KeyCount>\
                            <MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>\
                            <IsTruncated>false</IsTruncated><Contents><Key>a%20b.jpg</Key>\
                            <Size>3</Size><ETag>\"abc\"</ETag></Contents></ListBucketResult>"
                            .to_owned(),
                    };
                    let status = if signed_far {
                        "200 OK"
                    } else {
                        "301 Moved Permanently"
                    };
                    let length = if method == "HEAD" { 0 } else { body.len() };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nx-amz-bucket-region: eu-west-1\r\n\
                         content-type: application/xml\r\ncontent-length: {length}\r\n\
                         connection: close\r\n\r\n{body}"
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (endpoint, log)
    }

    fn blobs_in_us_east_1(endpoint: &str) -> S3Blobs {
        S3Blobs::new(Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(endpoint)
                .force_path_style(true)
                .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
                .build(),
        ))
    }

    #[tokio::test]
    async fn a_bucket_in_another_region_is_followed_there_and_remembered() {
        let (endpoint, log) = far_away_s3().await;
        let blobs = blobs_in_us_east_1(&endpoint);
        let page = blobs.list("far", "", None, 1000).await.unwrap();
        assert_eq!(page.objects[0].key, "a b.jpg");
        assert_eq!(*log.lock().unwrap(), ["other GET", "eu-west-1 GET"]);
        blobs.list("far", "", None, 1000).await.unwrap();
        assert_eq!(
            log.lock().unwrap().len(),
            3,
            "the second listing went straight to the bucket's region"
        );
        let url = blobs
            .presign_get("far", "a b.jpg", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(url.contains("%2Feu-west-1%2Fs3%2Faws4_request"), "{url}");
        assert_eq!(log.lock().unwrap().len(), 3, "the region was known");
    }

    #[tokio::test]
    async fn a_url_for_a_bucket_never_used_is_signed_for_the_region_head_bucket_names() {
        let (endpoint, log) = far_away_s3().await;
        let blobs = blobs_in_us_east_1(&endpoint);
        let url = blobs
            .presign_get("far", "a.jpg", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(url.contains("%2Feu-west-1%2Fs3%2Faws4_request"), "{url}");
        assert_eq!(*log.lock().unwrap(), ["other HEAD", "eu-west-1 HEAD"]);
        blobs
            .presign_get("far", "b.jpg", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(log.lock().unwrap().len(), 2, "asked once a bucket");
    }

    #[test]
    fn only_a_region_name_is_taken_from_an_answer() {
        for good in ["eu-west-1", "us-gov-west-1", "cn-north-1"] {
            assert!(is_region_name(good), "{good}");
        }
        for bad in [
            "",
            "x",
            "evil.example.com",
            "eu-west-1/../",
            "EU-WEST-1",
            "a b",
        ] {
            assert!(!is_region_name(bad), "{bad}");
        }
    }
}
