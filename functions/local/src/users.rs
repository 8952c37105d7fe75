//! The local server's own users: bearer tokens looked up in the users file, and `POST /users`
//! to create one. On AWS the identity provider owns users, so neither is in the shared router.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use labeling_api::Authenticator;
use labeling_api::auth::{UserLookup, bearer_token};
// The shapes the generated OpenAPI document gives `POST /users`.
use labeling_api::dto::{CreatedUser, NewUser};
use labeling_api::problem::Problem;
use labeling_api::routes::Body;
use labeling_core::{Actor, Role};
use labeling_embedded::UsersFile;
use labeling_embedded::users_file::UserError;

/// Bearer tokens looked up in the users file; a project member must be one of its users.
pub struct BearerTokens(pub Arc<UsersFile>);

impl Authenticator for BearerTokens {
    fn authenticate(&self, parts: &Parts) -> Option<Actor> {
        self.0.authenticate(bearer_token(parts)?)
    }

    fn find_user(&self, name: &str) -> UserLookup {
        match self.0.find_user(name) {
            Some(stored) => UserLookup::Found(stored),
            None => UserLookup::Missing,
        }
    }
}

/// `POST /users`, for the local server to merge into the shared router.
pub fn routes(users: Arc<UsersFile>) -> Router {
    Router::new()
        .route("/users", post(create_user))
        .with_state(users)
}

/// An admin of the users file.
struct Admin;

impl FromRequestParts<Arc<UsersFile>> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        users: &Arc<UsersFile>,
    ) -> Result<Self, Self::Rejection> {
        let actor = bearer_token(parts)
            .and_then(|token| users.authenticate(token))
            .ok_or_else(Problem::unauthorized)?;
        if actor.is_admin() {
            Ok(Admin)
        } else {
            Err(Problem::forbidden("only admins may do this"))
        }
    }
}

async fn create_user(
    State(users): State<Arc<UsersFile>>,
    _admin: Admin,
    Body(input): Body<NewUser>,
) -> Result<Response, Problem> {
    let role = Role::parse(&input.role)
        .ok_or_else(|| Problem::invalid("/role", "role is admin or labeler"))?;
    match users.create_user(&input.name, role) {
        Ok(token) => Ok((
            StatusCode::CREATED,
            Json(CreatedUser {
                name: input.name,
                role: role.into(),
                token,
            }),
        )
            .into_response()),
        Err(UserError::Exists(name)) => Err(Problem::new(
            StatusCode::CONFLICT,
            "name-taken",
            format!("a user named {name:?} exists"),
        )),
        Err(UserError::InvalidName) => Err(Problem::invalid(
            "/name",
            UserError::InvalidName.to_string(),
        )),
        Err(error) => {
            tracing::error!(%error, "could not create a user");
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the user store is unavailable",
            ))
        }
    }
}
