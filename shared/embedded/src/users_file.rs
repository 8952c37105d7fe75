//! The local server's users, in a JSON file in the data directory. Only token hashes are
//! stored. (On AWS the identity provider owns users: this is no port of the use cases.)
//!
//! User names compare like every name (trimmed, case-insensitively): `Ann` and `ann` are one
//! user. Token hashes are compared in constant time, so response times do not reveal how much
//! of a stored hash a guess matched.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use labeling_core::access::{Actor, Role};
use labeling_core::domain::names::same_name;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user named {0:?} exists already")]
    Exists(String),
    #[error("a user name is 1 to 64 letters, digits, dots, dashes, underscores or @")]
    InvalidName,
    #[error("the user store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredUser {
    name: String,
    role: Role,
    token_sha256: String,
}

pub struct UsersFile {
    path: PathBuf,
    users: Mutex<Vec<StoredUser>>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equality whose time depends only on the lengths, not on where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// A fresh random token.
pub fn new_token() -> String {
    format!(
        "lbl_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl UsersFile {
    pub fn open(path: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let path = path.into();
        // Files from before private modes were enforced get tightened.
        if path.exists() {
            crate::private_file::restrict(&path)
                .with_context(|| format!("restricting {}", path.display()))?;
        }
        let users = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self {
            path,
            users: Mutex::new(users),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Creates the first admin with `token` (or a generated one); returns the token.
    pub fn create_first_admin(&self, token: Option<String>) -> anyhow::Result<String> {
        let token = token.unwrap_or_else(new_token);
        self.insert("admin", Role::Admin, &token)?;
        Ok(token)
    }

    fn insert(&self, name: &str, role: Role, token: &str) -> Result<(), UserError> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = users.iter().find(|u| same_name(&u.name, name)) {
            return Err(UserError::Exists(existing.name.clone()));
        }
        users.push(StoredUser {
            name: name.to_owned(),
            role,
            token_sha256: hash(token),
        });
        let text = serde_json::to_string_pretty(&*users)
            .map_err(|e| UserError::Unavailable(Box::new(e)))?;
        let temporary = self.path.with_extension("json.tmp");
        crate::private_file::write(&temporary, text.as_bytes())
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .map_err(|e| {
                users.pop();
                UserError::Unavailable(Box::new(e))
            })
    }
}

impl UsersFile {
    /// The user a token belongs to, if any.
    pub fn authenticate(&self, token: &str) -> Option<Actor> {
        let hashed = hash(token);
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        // Every stored hash is compared, in full: no early exit tells where a match is.
        let mut found = None;
        for user in users.iter() {
            if constant_time_eq(user.token_sha256.as_bytes(), hashed.as_bytes()) {
                found = Some(user);
            }
        }
        found.map(|u| Actor {
            user: u.name.clone(),
            role: u.role,
        })
    }

    /// Creates a user and returns its token, shown this once. Names compare trimmed and
    /// case-insensitively (`Ann` and `ann` are one user): a second such name is `Exists`.
    pub fn create_user(&self, name: &str, role: Role) -> Result<String, UserError> {
        let name = name.trim();
        if !valid_user_name(name) {
            return Err(UserError::InvalidName);
        }
        let token = new_token();
        self.insert(name, role, &token)?;
        Ok(token)
    }

    /// The stored name of the user `name` refers to (compared as in `create_user`), if any.
    pub fn find_user(&self, name: &str) -> Option<String> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .iter()
            .find(|u| same_name(&u.name, name))
            .map(|u| u.name.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn users() -> (UsersFile, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("users-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        (UsersFile::open(dir.join("users.json")).unwrap(), dir)
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_token_finds_its_user_among_many_and_a_near_miss_finds_none() {
        let (users, dir) = users();
        let mut tokens = Vec::new();
        for i in 0..5 {
            tokens.push(
                users
                    .create_user(&format!("user{i}"), Role::Labeler)
                    .unwrap(),
            );
        }
        assert_eq!(users.authenticate(&tokens[3]).unwrap().user, "user3");
        let mut near = tokens[3].clone();
        near.pop();
        near.push('x');
        assert!(users.authenticate(&near).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn user_names_differing_only_in_case_cannot_coexist() {
        let (users, dir) = users();
        users.create_user("Ann", Role::Labeler).unwrap();
        assert!(matches!(
            users.create_user(" ann", Role::Labeler),
            Err(UserError::Exists(name)) if name == "Ann"
        ));
        assert_eq!(users.find_user("ANN").as_deref(), Some("Ann"));
        assert_eq!(users.find_user("bob"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
