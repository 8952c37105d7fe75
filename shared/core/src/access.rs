//! Who is calling, and the two roles.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Projects it is a member of: read, check out, renew, release, submit.
    Labeler,
}

impl Role {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "admin" => Some(Self::Admin),
            "labeler" => Some(Self::Labeler),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Labeler => "labeler",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: String,
    pub role: Role,
}

impl Actor {
    pub fn admin(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            role: Role::Admin,
        }
    }
    pub fn labeler(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            role: Role::Labeler,
        }
    }
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}
