//! Identity on AWS: API Gateway's JWT authorizer has already checked the token; its claims
//! arrive in the request context. Cognito groups map to the two roles.

use labeling_api::Authenticator;
use labeling_core::{Actor, Role};
use lambda_http::request::RequestContext;

/// Roles from the `cognito:groups` claim: `labeling-admins` gives admin, `labelers` labeler.
pub struct JwtClaims {
    admin_group: String,
    labeler_group: String,
}

impl JwtClaims {
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

impl Authenticator for JwtClaims {
    fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Actor> {
        let Some(RequestContext::ApiGatewayV2(context)) = parts.extensions.get::<RequestContext>()
        else {
            return None;
        };
        let claims = &context.authorizer.as_ref()?.jwt.as_ref()?.claims;
        self.actor(|name| claims.get(name).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_roles() {
        let jwt = JwtClaims {
            admin_group: "labeling-admins".into(),
            labeler_group: "labelers".into(),
        };
        let claims = |groups: &'static str| {
            move |name: &str| match name {
                "cognito:username" => Some("ann"),
                "cognito:groups" => Some(groups),
                _ => None,
            }
        };
        assert_eq!(jwt.actor(claims("[labelers]")), Some(Actor::labeler("ann")));
        assert_eq!(
            jwt.actor(claims("[labelers labeling-admins]")),
            Some(Actor::admin("ann"))
        );
        assert_eq!(
            jwt.actor(claims("[\"labelers\"]")),
            Some(Actor::labeler("ann"))
        );
        assert_eq!(
            jwt.actor(claims("[others]")),
            None,
            "no known group: no access"
        );
        assert_eq!(jwt.actor(claims("")), None);
    }
}
