//! Datasets: folders of images uploaded into the service's bucket (`datasets/<name>/`) through
//! signed PUT URLs. A project uses one with the source `dataset:<name>`.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::access::Actor;
use crate::domain::errors::ValidationErrors;
use crate::domain::source::is_image_key;
use crate::jobs::Job;
use crate::keys::{self, attr};
use crate::ports::blobs::MAX_LIST_KEYS;
use crate::ports::{Condition, Query, SkRange, TableError, Update, Write};
use crate::service::{from_item, to_item};
use crate::time::rfc3339;
use crate::usecases::projects::{ProjectError, require_admin};

/// Files one upload request may name.
pub const MAX_FILES_PER_REQUEST: usize = 1000;
/// How long an upload URL stays valid.
const UPLOAD_URL_SECONDS: u64 = 3600;
/// Existing files checked at once when an upload resumes.
const RESUME_CHECKS_AT_ONCE: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRecord {
    pub name: String,
    pub description: String,
    pub created_by: String,
    pub created_at: i64,
    /// Files and bytes under the dataset's folder at the last count: reading a dataset never
    /// lists its folder (a million files take longer than API Gateway's 30 seconds).
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// When the listing of the last count began; 0 before the first (rows written before
    /// counts were kept).
    #[serde(default)]
    pub counted_at: i64,
    /// When an upload last queued a count that has not begun; 0 when none waits.
    #[serde(default)]
    pub count_requested_at: i64,
}

/// A queued count stands for the uploads that follow it for this long: a bulk upload's
/// object-created events queue one count, not one each. A count whose job was lost is queued
/// again by the next upload after this long.
const COUNT_PENDING_MS: i64 = 5 * 60 * 1000;
/// The events of a burst of uploads that arrive within this delay are counted by one listing.
pub const COUNT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);
/// Reading a dataset counted longer ago than this queues a count: files deleted from the bucket
/// by hand, or uploads whose events never came (an emulator sends none), show within a minute.
const COUNT_STALE_MS: i64 = 60 * 1000;

/// A dataset's description: its row stays far inside DynamoDB's 400 KB item.
pub const MAX_DESCRIPTION_BYTES: usize = 10_000;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewDatasetInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A file to upload: a name, or a name with its size and SHA-256 (hex) so a file already
/// uploaded whole is skipped.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UploadFileInput {
    Name(String),
    Described {
        name: String,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        sha256: Option<String>,
    },
}

impl UploadFileInput {
    fn name(&self) -> &str {
        match self {
            UploadFileInput::Name(name) | UploadFileInput::Described { name, .. } => name,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UploadsInput {
    #[serde(default)]
    pub files: Vec<UploadFileInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetView {
    pub name: String,
    pub description: String,
    /// The project source that reads this dataset.
    pub source: String,
    pub location: String,
    pub files: u64,
    pub bytes: u64,
    /// When `files` and `bytes` were counted; None until the first count (under way).
    pub counted_at: Option<String>,
    pub created_by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UploadSlot {
    pub name: String,
    pub key: String,
    /// PUT the file's bytes here (absent when `skip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The headers the PUT must carry, each with this exact value (they are signed): the
    /// content type, and the body's SHA-256 when the request gave one. Empty when `skip`.
    pub headers: BTreeMap<String, String>,
    /// The same file (size and stored SHA-256) is already there.
    pub skip: bool,
}

const DATASETS_FOLDER: &str = "datasets/";

/// The dataset whose folder holds `key` (a key of the service's bucket), if any.
pub fn dataset_of_key(key: &str) -> Option<&str> {
    let (name, file) = key.strip_prefix(DATASETS_FOLDER)?.split_once('/')?;
    (valid_dataset_name(name) && !file.is_empty()).then_some(name)
}

pub fn dataset_prefix(name: &str) -> String {
    format!("{DATASETS_FOLDER}{name}/")
}

/// True for keys under the datasets folder of the service's bucket: the only place signed
/// upload URLs point at.
pub fn is_upload_key(key: &str) -> bool {
    key.starts_with(DATASETS_FOLDER)
}

/// Dataset names: 1 to 63 lower-case letters, digits, dots, dashes and underscores.
pub fn valid_dataset_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// S3's longest object key, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// Why the key a name makes in `dataset` is refused, if it is: S3 counts the whole key, the
/// dataset's prefix included, against its 1,024 bytes.
pub fn check_upload_key_length(dataset: &str, name: &str) -> Option<String> {
    let key_bytes = dataset_prefix(dataset).len() + name.len();
    (key_bytes > MAX_KEY_BYTES).then(|| {
        format!(
            "{name:?}: with the prefix {:?} the key is {key_bytes} bytes; S3 keys are at most \
             {MAX_KEY_BYTES}",
            dataset_prefix(dataset)
        )
    })
}

/// Why an upload name is refused, if it is.
pub fn check_upload_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("the name is empty");
    }
    if name.len() > 1024 {
        return Some("the name is longer than 1,024 bytes");
    }
    if name.chars().any(char::is_control) {
        return Some("the name holds control characters");
    }
    if name.starts_with('/') || name.contains('\\') || name.as_bytes().get(1) == Some(&b':') {
        return Some("absolute paths are not allowed; give a path relative to the dataset");
    }
    if name
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Some("'..' and '.' segments are not allowed");
    }
    if name.split('/').any(str::is_empty) {
        return Some("the path has an empty segment");
    }
    if !is_image_key(name) {
        return Some(
            "only image files are accepted (jpg, jpeg, jpe, jfif, png, bmp, gif, tif, tiff, webp)",
        );
    }
    None
}

/// Datasets: named sources projects are made from. Holds only the ports this area touches.
pub struct Datasets<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) queue: &'a std::sync::Arc<dyn crate::ports::Queue>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
}

impl Datasets<'_> {
    #[instrument(skip(self, input))]
    pub async fn create_dataset(
        &self,
        actor: &Actor,
        input: NewDatasetInput,
    ) -> Result<DatasetView, ProjectError> {
        require_admin(actor)?;
        if !valid_dataset_name(&input.name) {
            return Err(ProjectError::Invalid(ValidationErrors::single(
                "/name",
                "a dataset name is 1 to 63 lower-case letters, digits, dots, dashes and underscores",
            )));
        }
        let description = input.description.unwrap_or_default();
        if description.len() > MAX_DESCRIPTION_BYTES {
            return Err(ProjectError::Invalid(ValidationErrors::single(
                "/description",
                format!(
                    "a description holds at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8, got {}",
                    description.len()
                ),
            )));
        }
        let record = DatasetRecord {
            name: input.name.clone(),
            description,
            created_by: actor.user.clone(),
            created_at: self.clock.now(),
            // A new dataset's folder is empty (uploads then queue counts of their own).
            files: 0,
            bytes: 0,
            counted_at: self.clock.now(),
            count_requested_at: 0,
        };
        let writes = vec![
            Write::Put {
                item: to_item(keys::dataset(&record.name), keys::entity::DATASET, &record)?,
                condition: Some(Condition::NotExists),
            },
            Write::Put {
                item: to_item(
                    keys::dataset_index(&record.name),
                    keys::entity::DATASET_INDEX,
                    &keys::row::DatasetIndexEntry { name: &record.name },
                )?,
                condition: None,
            },
        ];
        match self.table.transact(writes).await {
            Ok(()) => {}
            Err(TableError::ConditionFailed { .. }) => {
                return Err(ProjectError::NameTaken(record.name));
            }
            Err(error) => return Err(error.into()),
        }
        Ok(self.dataset_view(&record))
    }

    async fn load_dataset(&self, name: &str) -> Result<DatasetRecord, ProjectError> {
        let item = self
            .table
            .get(&keys::dataset(name))
            .await?
            .ok_or_else(|| ProjectError::NotFound(format!("dataset {name}")))?;
        from_item(&item).map_err(ProjectError::Unavailable)
    }

    /// Whether a dataset exists (project creation checks `dataset:<name>` sources).
    pub(crate) async fn dataset_exists(&self, name: &str) -> Result<bool, ProjectError> {
        Ok(self.table.get(&keys::dataset(name)).await?.is_some())
    }

    fn dataset_view(&self, record: &DatasetRecord) -> DatasetView {
        DatasetView {
            name: record.name.clone(),
            description: record.description.clone(),
            source: format!("dataset:{}", record.name),
            location: format!(
                "s3://{}/{}",
                self.config.system_bucket,
                dataset_prefix(&record.name)
            ),
            files: record.files,
            bytes: record.bytes,
            counted_at: (record.counted_at > 0).then(|| rfc3339(record.counted_at)),
            created_by: record.created_by.clone(),
            created_at: rfc3339(record.created_at),
        }
    }

    /// Files and bytes under a dataset's folder (one list call per 1,000 files).
    async fn dataset_counts(&self, name: &str) -> Result<(u64, u64), ProjectError> {
        let (mut files, mut bytes) = (0, 0);
        let mut start_after: Option<String> = None;
        loop {
            let page = match self
                .blobs
                .list(
                    &self.config.system_bucket,
                    &dataset_prefix(name),
                    start_after.as_deref(),
                    MAX_LIST_KEYS,
                )
                .await
            {
                Ok(page) => page,
                Err(crate::ports::BlobError::NoSuchBucket(_)) => return Ok((0, 0)),
                Err(error) => return Err(ProjectError::Unavailable(Box::new(error))),
            };
            files += page.objects.len() as u64;
            bytes += page.objects.iter().map(|o| o.size).sum::<u64>();
            match (page.truncated, page.objects.last()) {
                (true, Some(last)) => start_after = Some(last.key.clone()),
                _ => return Ok((files, bytes)),
            }
        }
    }

    /// Queues a count of the dataset's folder unless one waits already (an upload's event, or
    /// a dataset never counted being read).
    async fn request_count(&self, record: &DatasetRecord) -> Result<(), ProjectError> {
        let now = self.clock.now();
        if record.count_requested_at > now - COUNT_PENDING_MS {
            return Ok(());
        }
        match self
            .table
            .update(
                &keys::dataset(&record.name),
                Update::default().set(attr::COUNT_REQUESTED_AT, now),
                Some(Condition::Exists),
            )
            .await
        {
            Ok(_) => {}
            Err(TableError::ConditionFailed { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        Job::CountDataset {
            dataset: record.name.clone(),
        }
        .send(self.queue.as_ref(), &self.config.jobs_queue, COUNT_DELAY)
        .await
        .map_err(|error| ProjectError::Unavailable(Box::new(error)))?;
        Ok(())
    }

    async fn count_if_stale(&self, record: &DatasetRecord) -> Result<(), ProjectError> {
        if self.clock.now() - record.counted_at > COUNT_STALE_MS {
            self.request_count(record).await?;
        }
        Ok(())
    }

    /// Objects were created in buckets: each dataset folder among them gets a count queued
    /// (one for a whole burst of uploads).
    #[instrument(skip(self, objects), fields(objects = objects.len()))]
    pub(crate) async fn objects_created(
        &self,
        objects: &[(String, String)],
    ) -> Result<(), ProjectError> {
        let mut names: Vec<&str> = objects
            .iter()
            .filter(|(bucket, _)| *bucket == self.config.system_bucket)
            .filter_map(|(_, key)| dataset_of_key(key))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            match self.load_dataset(name).await {
                Ok(record) => self.request_count(&record).await?,
                // Files in a folder no dataset owns: nothing to count.
                Err(ProjectError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The count job: lists the dataset's folder and keeps its files and bytes on its row.
    /// Uploads during the listing queue a count of their own; a count that began earlier
    /// never overwrites a later one.
    #[instrument(skip(self), err)]
    pub(crate) async fn count_dataset(&self, name: &str) -> Result<(), ProjectError> {
        let key = keys::dataset(name);
        let Some(item) = self.table.get(&key).await? else {
            tracing::info!(dataset = name, "count of a dataset that is gone; dropped");
            return Ok(());
        };
        let had_count = item.attrs.contains_key(attr::COUNTED_AT);
        let started = self.clock.now();
        self.table
            .update(
                &key,
                Update::default().set(attr::COUNT_REQUESTED_AT, 0),
                Some(Condition::Exists),
            )
            .await?;
        let (files, bytes) = self.dataset_counts(name).await?;
        let newer_than_stored = if had_count {
            Condition::less_than(attr::COUNTED_AT, started)
        } else {
            Condition::NotEquals(attr::COUNTED_AT.to_owned(), started.into())
        };
        match self
            .table
            .update(
                &key,
                Update::default()
                    .set(attr::FILES, files)
                    .set(attr::BYTES, bytes)
                    .set(attr::COUNTED_AT, started),
                Some(newer_than_stored),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(dataset = name, files, bytes, "dataset counted");
                Ok(())
            }
            Err(TableError::ConditionFailed { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    #[instrument(skip(self))]
    pub async fn get_dataset(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<DatasetView, ProjectError> {
        require_admin(actor)?;
        let record = self.load_dataset(name).await?;
        self.count_if_stale(&record).await?;
        Ok(self.dataset_view(&record))
    }

    #[instrument(skip(self))]
    pub async fn list_datasets(&self, actor: &Actor) -> Result<Vec<DatasetView>, ProjectError> {
        require_admin(actor)?;
        let mut views = Vec::new();
        let mut start_after = None;
        loop {
            let mut query = Query::new(keys::DATASET_INDEX_PK, SkRange::All, 100);
            query.start_after = start_after;
            let page = self.table.query(query).await?;
            for item in &page.items {
                let Some(name) = keys::dataset_name_from_index_sk(&item.key.sk) else {
                    continue;
                };
                let record = self.load_dataset(name).await?;
                self.count_if_stale(&record).await?;
                views.push(self.dataset_view(&record));
            }
            match page.last_evaluated {
                Some(last) => start_after = Some(last),
                None => return Ok(views),
            }
        }
    }

    /// Signed PUT URLs for files of a dataset. Every name is checked first; one bad name
    /// refuses the whole request (422 naming it) and nothing is handed out.
    #[instrument(skip(self, input))]
    pub async fn request_uploads(
        &self,
        actor: &Actor,
        dataset: &str,
        input: UploadsInput,
    ) -> Result<Vec<UploadSlot>, ProjectError> {
        require_admin(actor)?;
        let mut errors = ValidationErrors::default();
        if input.files.is_empty() || input.files.len() > MAX_FILES_PER_REQUEST {
            errors.push("/files", format!("name 1 to {MAX_FILES_PER_REQUEST} files"));
        }
        for (index, file) in input.files.iter().enumerate() {
            if let Some(reason) = check_upload_name(file.name()) {
                errors.push(
                    format!("/files/{index}"),
                    format!("{:?}: {reason}", file.name()),
                );
            } else if let Some(reason) = check_upload_key_length(dataset, file.name()) {
                errors.push(format!("/files/{index}"), reason);
            }
            if let UploadFileInput::Described {
                sha256: Some(hash), ..
            } = file
                && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                errors.push(format!("/files/{index}/sha256"), "sha256 is 64 hex digits");
            }
        }
        errors.into_result().map_err(ProjectError::Invalid)?;
        self.load_dataset(dataset).await?;
        let bucket = &self.config.system_bucket;
        // Files already there are checked by their stored checksums (a header each, never a
        // read), many at a time: a resumed upload of hundreds of files answers within seconds.
        let slots = futures::stream::iter(input.files.into_iter().map(|file| async move {
            let key = format!("{}{}", dataset_prefix(dataset), file.name());
            let (size, sha256) = match &file {
                UploadFileInput::Described { size, sha256, .. } => {
                    (*size, sha256.as_deref().and_then(sha256_from_hex))
                }
                UploadFileInput::Name(_) => (None, None),
            };
            let skip = match (size, sha256) {
                (Some(size), Some(digest)) => self.same_object(bucket, &key, size, digest).await,
                _ => false,
            };
            let signed = if skip {
                None
            } else {
                Some(
                    self.blobs
                        .presign_put(
                            bucket,
                            &key,
                            content_type_of(&key),
                            sha256,
                            std::time::Duration::from_secs(UPLOAD_URL_SECONDS),
                        )
                        .await
                        .map_err(|e| ProjectError::Unavailable(Box::new(e)))?,
                )
            };
            let (url, headers) = match signed {
                Some(signed) => (Some(signed.url), signed.headers),
                None => (None, BTreeMap::new()),
            };
            Ok::<_, ProjectError>(UploadSlot {
                name: file.name().to_owned(),
                key,
                url,
                headers,
                skip,
            })
        }))
        .buffered(RESUME_CHECKS_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        Ok(slots)
    }

    /// True when the object exists with this size and a stored SHA-256 equal to `sha256`.
    /// An object stored without a checksum (put some other way) is uploaded again: one more
    /// PUT is bounded work, where hashing every existing file would outlast API Gateway's 30 s.
    async fn same_object(&self, bucket: &str, key: &str, size: u64, sha256: [u8; 32]) -> bool {
        matches!(
            self.blobs.head_checksum(bucket, key).await,
            Ok(Some(stored)) if stored.meta.size == size && stored.sha256 == Some(sha256)
        )
    }
}

/// The 32 bytes of a SHA-256 written as 64 hex digits (checked before this is called).
fn sha256_from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    (hex.len() == 64).then_some(digest)
}

/// The content type of an object by its extension: what a signed PUT is made for (the upload
/// slot hands it out as the `content-type` header to send; a browser's `file.type` may differ)
/// and what the local server serves.
pub fn content_type_of(key: &str) -> &'static str {
    let extension = key.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "jpg" | "jpeg" | "jpe" | "jfif" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "webp" => "image/webp",
        "json" => "application/json",
        "jsonl" => "application/x-ndjson",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::{check_upload_key_length, check_upload_name};

    #[test]
    fn an_upload_key_is_measured_with_its_dataset_prefix() {
        // "datasets/cats/" is 14 bytes: 1,010 bytes of name make a key of exactly 1,024.
        let fits = format!("{}.jpg", "a".repeat(1006));
        assert_eq!(check_upload_name(&fits), None);
        assert_eq!(check_upload_key_length("cats", &fits), None);
        let too_long = format!("{}.jpg", "a".repeat(1007));
        assert_eq!(
            check_upload_name(&too_long),
            None,
            "the name alone is under 1,024 bytes"
        );
        let reason = check_upload_key_length("cats", &too_long).unwrap();
        assert!(reason.contains("1025 bytes"), "{reason}");
    }

    #[test]
    fn upload_names_are_sanitized() {
        assert_eq!(check_upload_name("cats/a.jpg"), None);
        assert_eq!(check_upload_name("a b (1).PNG"), None);
        for bad in [
            "",
            "../a.jpg",
            "a/../../b.jpg",
            "/etc/a.jpg",
            "C:\\x.jpg",
            "a\u{0}.jpg",
            "a\nb.jpg",
            "a//b.jpg",
            "./a.jpg",
            "notes.txt",
            "a\\b.jpg",
        ] {
            assert!(check_upload_name(bad).is_some(), "{bad:?} was accepted");
        }
    }
}
