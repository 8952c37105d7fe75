//! The HTTP API: one axum router for every deployment (the local server serves it directly,
//! Lambda through `lambda_http`). Handlers only translate HTTP to use cases and back.

pub mod auth;
pub mod dto;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod web;

pub use auth::Authenticator;
pub use routes::{AppState, router};

pub use openapi::openapi_json;
