//! Presenting a checked-out task: image sizes read from the image's header, prelabels, URLs.

use super::Labeling;
use crate::domain::labeling::TaskRecord;
use crate::domain::project::ProjectRecord;
use crate::ports::{BlobError, ByteRange};
use crate::time::rfc3339;

use super::{CheckedOutItem, CheckedOutTask, HEADER_BYTES, LabelingError, usable_size};

impl Labeling<'_> {
    /// Reads the image's width and height from its header; `None` when the image is missing
    /// or unreadable.
    pub(super) async fn image_size(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(u32, u32)>, LabelingError> {
        let head = match self
            .blobs
            .get(
                bucket,
                key,
                Some(ByteRange {
                    start: 0,
                    end: HEADER_BYTES,
                }),
            )
            .await
        {
            Ok(bytes) => bytes,
            Err(BlobError::NotFound { .. } | BlobError::NoSuchBucket(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if let Ok(size) = imagesize::blob_size(&head) {
            return Ok(usable_size(size.width, size.height));
        }
        if head.len() as u64 == HEADER_BYTES {
            // Large metadata blocks can push the size past the first 64 KB.
            let whole = self.blobs.get(bucket, key, None).await?;
            if let Ok(size) = imagesize::blob_size(&whole) {
                return Ok(usable_size(size.width, size.height));
            }
        }
        Ok(None)
    }

    pub(super) async fn present(
        &self,
        project: &ProjectRecord,
        task: &TaskRecord,
    ) -> Result<CheckedOutTask, LabelingError> {
        let source = project
            .source
            .allowed(self.config.allow_file_sources)
            .map_err(|error| LabelingError::Unavailable(Box::new(error)))?;
        let mut items = Vec::with_capacity(task.items.len());
        for item in &task.items {
            let image_url = self
                .blobs
                .presign_get(source.bucket(), &item.key, self.config.image_url_ttl)
                .await?;
            items.push(CheckedOutItem {
                item_id: item.item,
                key: item.key.clone(),
                image_url,
                width: item.width,
                height: item.height,
                prelabels: crate::domain::presented::prelabel_views(project, &item.prelabels),
            });
        }
        Ok(CheckedOutTask {
            task_id: task.id.clone(),
            kind: task.kind,
            lease_expires_at: rfc3339(task.lease_expires_at),
            task_type: project.task_type.as_str(),
            instructions: project.instructions.clone(),
            labels: project.classes.iter().map(|c| c.name.clone()).collect(),
            items,
        })
    }
}
