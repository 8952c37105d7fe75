//! Identity on AWS: API Gateway's JWT authorizer has already checked the token; its claims
//! arrive in the request context. Cognito groups map to the two roles.

use labeling_api::Authenticator;
use labeling_api::auth::GroupRoles;
use labeling_core::Actor;
use lambda_http::request::RequestContext;

/// The claims API Gateway's authorizer checked, mapped to roles by [`GroupRoles`].
pub struct JwtClaims(pub GroupRoles);

impl Authenticator for JwtClaims {
    fn authenticate(&self, parts: &axum::http::request::Parts) -> Option<Actor> {
        let Some(RequestContext::ApiGatewayV2(context)) = parts.extensions.get::<RequestContext>()
        else {
            return None;
        };
        let claims = &context.authorizer.as_ref()?.jwt.as_ref()?.claims;
        self.0.actor(|name| claims.get(name).map(String::as_str))
    }
}
