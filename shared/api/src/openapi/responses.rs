//! The problem+json responses shared by the operations (`#/components/responses/...`).

use utoipa::ToResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
            .build(),
    )
}

/// One reusable problem response: a name and its description.
macro_rules! problem_response {
    ($name:ident, $description:expr) => {
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem($description).build().into())
            }
        }
    };
}

problem_response!(
    BadRequest,
    "The body is not valid JSON, a query parameter or path parameter does not parse, or (on /blobs) the signature parameters are missing or malformed."
);
problem_response!(
    BadQuery,
    "A query parameter does not parse (type `bad-query`; `parameter` names it)."
);
problem_response!(Unauthorized, "Missing or unknown bearer token.");
problem_response!(
    Forbidden,
    "The caller may not do this (not an admin, someone else's task, or a bad or expired signed URL)."
);
problem_response!(
    NotFound,
    "No such project, task, item or member (projects a labeler is not a member of do not exist for it)."
);
problem_response!(
    Conflict,
    "The state forbids it: wrong project status, name taken, lease lost, labeling started over, nothing to reject, or a race (retry)."
);
problem_response!(
    Unprocessable,
    "The request is invalid (including JSON of the wrong shape); `errors` points at each offending field."
);
problem_response!(
    TooLarge,
    "The body is over the 2 MiB limit (type `too-large`)."
);

/// The route exists but does not serve this method (type `method-not-allowed`).
pub struct MethodNotAllowed;

impl<'r> ToResponse<'r> for MethodNotAllowed {
    fn response() -> (&'r str, RefOr<Response>) {
        let allow = HeaderBuilder::new()
            .schema(Some(utoipa::openapi::schema::Object::with_type(
                utoipa::openapi::schema::Type::String,
            )))
            .description(Some("The methods the route serves."))
            .build();
        (
            "MethodNotAllowed",
            problem("The route exists but does not serve this method (type `method-not-allowed`).")
                .header("Allow", allow)
                .build()
                .into(),
        )
    }
}

/// Storage or the job queue is unavailable, or busy past the server's own retries; the
/// `Retry-After` header says when to try again.
pub struct Unavailable;

impl<'r> ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        let retry_after = HeaderBuilder::new()
            .schema(Some(utoipa::openapi::schema::Object::with_type(
                utoipa::openapi::schema::Type::Integer,
            )))
            .description(Some("Seconds to wait before retrying."))
            .build();
        (
            "Unavailable",
            problem("Storage or the job queue is unavailable, or too busy past the server's own retries (a write conflict that kept recurring); retry after the `Retry-After` seconds.")
                .header("Retry-After", retry_after)
                .build()
                .into(),
        )
    }
}
