//! The `Users` port on a JSON file in the data directory. Only token hashes are stored.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use labeling_core::access::{Actor, Role};
use labeling_core::ports::users::{UserError, Users, valid_user_name};
use sha2::{Digest, Sha256};

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
        if users.iter().any(|u| u.name == name) {
            return Err(UserError::Exists(name.to_owned()));
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

impl Users for UsersFile {
    fn authenticate(&self, token: &str) -> Option<Actor> {
        let hashed = hash(token);
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .iter()
            .find(|u| u.token_sha256 == hashed)
            .map(|u| Actor {
                user: u.name.clone(),
                role: u.role,
            })
    }

    fn create_user(&self, name: &str, role: Role) -> Result<String, UserError> {
        if !valid_user_name(name) {
            return Err(UserError::InvalidName);
        }
        let token = new_token();
        self.insert(name, role, &token)?;
        Ok(token)
    }
}
