//! Embedded adapters of the ports, for the one-process deployment: a SQLite file as the table
//! and the job queue, a folder as the blob store, and a file of users.

pub mod database;
pub mod folder_blobs;
pub mod private_file;
pub mod sqlite_queue;
pub mod sqlite_table;
pub mod users_file;

pub use database::Database;
pub use folder_blobs::{FolderBlobs, PendingObject};
pub use sqlite_queue::SqliteQueue;
pub use sqlite_table::SqliteTable;
pub use users_file::UsersFile;
