//! Export: the multipart part writer, which buffers an export's bytes and uploads them as
//! parts of one multipart upload, so the object appears whole or not at all.

use super::Exports;
use crate::ports::{BlobError, CompletedPart};

/// Bytes buffered before a part is uploaded (S3 wants at least 5 MiB for all parts but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Buffers bytes and uploads them as parts of one multipart upload.
pub(super) struct PartWriter<'a> {
    service: &'a Exports<'a>,
    bucket: String,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
}

impl<'a> PartWriter<'a> {
    pub(super) async fn start(
        service: &'a Exports<'a>,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<Self, BlobError> {
        let upload_id = service
            .blobs
            .start_multipart(bucket, key, content_type)
            .await?;
        Ok(Self {
            service,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            buffer: Vec::with_capacity(PART_BYTES + 64 * 1024),
            parts: Vec::new(),
        })
    }

    /// True when this write uploaded a part: everything written so far is then in the store,
    /// the moment for the job to record its progress (one table write a part, not an item).
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<bool, BlobError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PART_BYTES {
            self.flush().await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        let part_number = self.parts.len() as u32 + 1;
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES + 64 * 1024));
        let etag = self
            .service
            .blobs
            .upload_part(&self.bucket, &self.key, &self.upload_id, part_number, body)
            .await?;
        self.parts.push(CompletedPart { part_number, etag });
        Ok(())
    }

    pub(super) async fn finish(mut self) -> Result<(), BlobError> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.flush().await?;
        }
        self.service
            .blobs
            .complete_multipart(&self.bucket, &self.key, &self.upload_id, self.parts)
            .await
    }

    pub(super) async fn abort(self) {
        let _ = self
            .service
            .blobs
            .abort_multipart(&self.bucket, &self.key, &self.upload_id)
            .await;
    }
}
