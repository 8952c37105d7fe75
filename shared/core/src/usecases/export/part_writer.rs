//! Export: the multipart part writer, which buffers an export's bytes and uploads them as
//! parts of one multipart upload, so the object appears whole or not at all. The upload outlives
//! a run: [`PartWriter::resume`] takes it up again from what a checkpoint kept.

use super::Exports;
use crate::ports::{BlobError, CompletedPart};

/// Bytes buffered before the first parts are uploaded (S3 wants at least 5 MiB for all parts
/// but the last).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploaded at one size before the size doubles.
const PARTS_PER_SIZE: u32 = 2_000;
/// S3's most parts in one upload.
const MAX_PARTS: u32 = 10_000;

/// The size of part `part_number` (from 1): 8 MiB for the first 2,000 parts, then doubling
/// every 2,000, so an export of unknown length stays small in memory while small and still
/// fits S3's 10,000 parts up to about 500 GB (the last 2,000 parts are 128 MiB each).
fn part_bytes(part_number: u32) -> usize {
    let doublings = part_number.saturating_sub(1).min(MAX_PARTS - 1) / PARTS_PER_SIZE;
    PART_BYTES << doublings
}

/// Buffers bytes and uploads them as parts of one multipart upload.
pub(super) struct PartWriter<'a> {
    service: &'a Exports<'a>,
    bucket: String,
    key: String,
    upload_id: String,
    buffer: Vec<u8>,
    parts: Vec<CompletedPart>,
    /// Whether a part was uploaded since the last [`PartWriter::take_uploaded`].
    uploaded: bool,
    /// Whether the store refused a part or the completion: the upload is gone (or was never
    /// this one), and retrying it cannot help.
    refused: bool,
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
            buffer: Vec::with_capacity(part_bytes(1) + 64 * 1024),
            parts: Vec::new(),
            uploaded: false,
            refused: false,
        })
    }

    /// Takes up an upload a checkpoint kept: its parts so far and the bytes not yet a part. The
    /// same bytes written after it make the same parts as in an uninterrupted run.
    pub(super) fn resume(
        service: &'a Exports<'a>,
        bucket: &str,
        key: &str,
        upload_id: String,
        parts: Vec<CompletedPart>,
        mut buffer: Vec<u8>,
    ) -> Self {
        let wanted = part_bytes(parts.len() as u32 + 1) + 64 * 1024;
        buffer.reserve(wanted.saturating_sub(buffer.len()));
        Self {
            service,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            buffer,
            parts,
            uploaded: false,
            refused: false,
        }
    }

    pub(super) fn upload_id(&self) -> &str {
        &self.upload_id
    }

    pub(super) fn parts(&self) -> &[CompletedPart] {
        &self.parts
    }

    /// The bytes written but not yet uploaded as a part.
    pub(super) fn buffered(&self) -> &[u8] {
        &self.buffer
    }

    pub(super) fn refused(&self) -> bool {
        self.refused
    }

    /// True when a part was uploaded since the last call: the moment for a checkpoint.
    pub(super) fn take_uploaded(&mut self) -> bool {
        std::mem::take(&mut self.uploaded)
    }

    /// Buffers the bytes, uploading the buffer as the next part once it reaches that part's size.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= part_bytes(self.parts.len() as u32 + 1) {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BlobError> {
        let part_number = self.parts.len() as u32 + 1;
        let next = part_bytes(part_number + 1);
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(next + 64 * 1024));
        let etag = self
            .service
            .blobs
            .upload_part(&self.bucket, &self.key, &self.upload_id, part_number, body)
            .await
            .inspect_err(|error| self.refused = matches!(error, BlobError::Invalid(_)))?;
        self.parts.push(CompletedPart { part_number, etag });
        self.uploaded = true;
        Ok(())
    }

    /// Uploads what is buffered as the last part and completes the upload.
    pub(super) async fn finish(&mut self) -> Result<(), BlobError> {
        if !self.buffer.is_empty() || self.parts.is_empty() {
            self.flush().await?;
        }
        self.service
            .blobs
            .complete_multipart(&self.bucket, &self.key, &self.upload_id, self.parts.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_PARTS, part_bytes};

    #[test]
    fn a_300_gb_export_stays_under_ten_thousand_parts() {
        let target: u64 = 300_000_000_000;
        let (mut parts, mut written) = (0u32, 0u64);
        while written < target {
            parts += 1;
            written += part_bytes(parts) as u64;
        }
        assert!(parts < MAX_PARTS, "{parts} parts");
        assert_eq!(part_bytes(1), 8 << 20, "small exports keep small parts");
        assert_eq!(part_bytes(2_001), 16 << 20);
        assert!(
            part_bytes(MAX_PARTS) <= 5 << 30,
            "S3 parts are at most 5 GiB"
        );
        let capacity: u64 = (1..=MAX_PARTS).map(|n| part_bytes(n) as u64).sum();
        assert!(
            capacity > 500_000_000_000,
            "{capacity} bytes fit in 10,000 parts"
        );
    }
}
