//! Who is calling: bearer tokens checked by an [`Authenticator`].

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use labeling_core::Actor;
use labeling_core::ports::Users;

use crate::problem::Problem;
use crate::routes::AppState;

/// Turns a request's credentials into an actor.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, parts: &Parts) -> Option<Actor>;
}

/// Bearer tokens looked up in a [`Users`] store (the local deployment).
pub struct BearerTokens(pub Arc<dyn Users>);

impl Authenticator for BearerTokens {
    fn authenticate(&self, parts: &Parts) -> Option<Actor> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))?;
        self.0.authenticate(token.trim())
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        state
            .authenticator
            .authenticate(parts)
            .map(Caller)
            .ok_or_else(Problem::unauthorized)
    }
}
