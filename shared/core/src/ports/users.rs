//! The `Users` port: who a bearer token belongs to. Locally a file of users; on AWS the
//! identity provider (JWT claims) answers instead and this port is not used.

use crate::access::{Actor, Role};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user named {0:?} exists already")]
    Exists(String),
    #[error("a user name is 1 to 64 letters, digits, dots, dashes, underscores or @")]
    InvalidName,
    #[error("the user store is unavailable")]
    Unavailable(#[source] super::BoxError),
}

pub trait Users: Send + Sync {
    /// The user a token belongs to, if any.
    fn authenticate(&self, token: &str) -> Option<Actor>;
    /// Creates a user and returns its token, shown this once. Names compare trimmed and
    /// case-insensitively (`Ann` and `ann` are one user): a second such name is `Exists`.
    fn create_user(&self, name: &str, role: Role) -> Result<String, UserError>;
    /// The stored name of the user `name` refers to (compared as in `create_user`), if any.
    fn find_user(&self, name: &str) -> Option<String>;
}

pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}
