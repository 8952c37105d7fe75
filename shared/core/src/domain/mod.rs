//! Domain types: constructed only through checks, so invalid values never pass the API edge.

pub mod errors;
pub mod geometry;
pub mod labeling;
pub mod ml;
pub mod ml_settings;
pub mod names;
pub mod presented;
pub mod project;
pub mod refresh;
pub mod shuffle;
pub mod source;

pub use errors::{ErrorKind, FieldError, ValidationErrors};
