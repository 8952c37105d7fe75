//! The HTTP API: one axum router for every deployment (the local server serves it directly,
//! Lambda through `lambda_http`). Handlers only translate HTTP to use cases and back.

pub mod auth;
pub mod dto;
pub mod problem;
pub mod routes;

pub use auth::Authenticator;
pub use routes::{AppState, router};

/// The OpenAPI 3.1 document served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");
