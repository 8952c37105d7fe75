//! Users of the local deployment (`POST /users`, served by `labeling-local` only): their shapes
//! live here so that the one generated document describes them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Role;

/// The body of `POST /users`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct NewUser {
    /// 1 to 64 letters, digits, dots, dashes, underscores or @.
    #[serde(default)]
    #[schema(required = true, pattern = "^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    #[serde(default)]
    #[schema(required = true, value_type = Role)]
    pub role: String,
}

/// A created user and its bearer token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedUser {
    pub name: String,
    pub role: Role,
    /// Bearer token; shown only once.
    pub token: String,
}
