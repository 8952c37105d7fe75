//! Who is calling: bearer tokens checked by an [`Authenticator`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use labeling_core::Actor;

use crate::problem::Problem;
use crate::routes::AppState;

/// Whether a user name is known to the identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserLookup {
    /// Known, under this (stored) spelling.
    Found(String),
    /// The source keeps the users and has none of that name.
    Missing,
    /// The source cannot list its users (a JWT issuer): any name is taken as given.
    Unknowable,
}

/// Turns a request's credentials into an actor.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, parts: &Parts) -> Option<Actor>;

    /// Who `name` is, for adding a project member: a source that keeps the users refuses a
    /// name it does not know.
    fn find_user(&self, _name: &str) -> UserLookup {
        UserLookup::Unknowable
    }
}

/// The bearer token of a request (`Authorization: Bearer <token>`), trimmed.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
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
