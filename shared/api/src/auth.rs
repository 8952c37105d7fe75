//! Who is calling: bearer tokens checked by an [`Authenticator`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use labeling_core::{Actor, Role};

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

/// Roles from an identity provider's groups claim (`cognito:groups`, or `groups`): members of
/// the admin group are admins, of the labeler group labelers, anyone else has no access. Shared
/// by API Gateway's authorizer (its claims arrive checked) and the local server's own check
/// of Cognito tokens.
pub struct GroupRoles {
    admin_group: String,
    labeler_group: String,
}

/// The groups the stack creates (template.yaml) and the configuration defaults to.
pub const DEFAULT_ADMIN_GROUP: &str = "labeling-admins";
pub const DEFAULT_LABELER_GROUP: &str = "labelers";

impl GroupRoles {
    /// Members of `admin_group` are admins, of `labeler_group` labelers (the configuration's
    /// `LABELING_ADMIN_GROUP` and `LABELING_LABELER_GROUP`).
    pub fn new(admin_group: &str, labeler_group: &str) -> Self {
        Self {
            admin_group: admin_group.to_owned(),
            labeler_group: labeler_group.to_owned(),
        }
    }

    /// The actor for a set of claims (name → value as API Gateway passes them).
    pub fn actor<'a>(&self, claim: impl Fn(&str) -> Option<&'a str>) -> Option<Actor> {
        let user = claim("cognito:username")
            .or_else(|| claim("username"))
            .or_else(|| claim("email"))
            .or_else(|| claim("sub"))?;
        let groups = parse_groups(
            claim("cognito:groups")
                .or_else(|| claim("groups"))
                .unwrap_or(""),
        );
        let role = if groups.iter().any(|g| *g == self.admin_group) {
            Role::Admin
        } else if groups.iter().any(|g| *g == self.labeler_group) {
            Role::Labeler
        } else {
            return None;
        };
        Some(Actor {
            user: user.to_owned(),
            role,
        })
    }
}

/// API Gateway flattens list claims into `[a b]`; tokens may also carry a JSON list or a
/// comma-separated string.
fn parse_groups(raw: &str) -> Vec<&str> {
    raw.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split([' ', ','])
        .map(|g| g.trim().trim_matches('"'))
        .filter(|g| !g.is_empty())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_roles() {
        let roles = GroupRoles::new(DEFAULT_ADMIN_GROUP, DEFAULT_LABELER_GROUP);
        let claims = |groups: &'static str| {
            move |name: &str| match name {
                "cognito:username" => Some("ann"),
                "cognito:groups" => Some(groups),
                _ => None,
            }
        };
        assert_eq!(
            roles.actor(claims("[labelers]")),
            Some(Actor::labeler("ann"))
        );
        assert_eq!(
            roles.actor(claims("[labelers labeling-admins]")),
            Some(Actor::admin("ann"))
        );
        assert_eq!(
            roles.actor(claims("[\"labelers\"]")),
            Some(Actor::labeler("ann"))
        );
        assert_eq!(
            roles.actor(claims("[others]")),
            None,
            "no known group: no access"
        );
        assert_eq!(roles.actor(claims("")), None);
    }
}
