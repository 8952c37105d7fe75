//! Ports: the narrow traits the use cases need from the outside world. Each documents what an
//! adapter MUST guarantee; `labeling-testkit` holds the contract suite every adapter passes.

pub mod blobs;
pub mod clock;
pub mod counting;
pub mod embedder;
pub mod features;
pub mod queue;
pub mod table;

pub use blobs::{
    BlobError, Blobs, ByteRange, CompletedPart, ListPage, ObjectChecksum, ObjectMeta, PresignedPut,
};
pub use clock::{Clock, EpochMillis, SystemClock};
pub use embedder::{Backbone, BackboneLoader, Embedder, EmbedderError, ImageRejected};
pub use features::{ExtractedMap, FeatureExtractor};
pub use queue::{Message, Queue, QueueError};
pub use table::{
    Attrs, Condition, Item, Key, Page, Query, SkRange, Table, TableError, Update, Write,
};

/// A boxed error from an adapter, kept as a source so logs show the cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
