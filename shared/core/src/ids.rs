//! Random identifiers and seeds.

/// A short random id with a readable prefix, e.g. `p_3f9a...`.
pub fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &raw[..20])
}

/// A random seed below 2^53, so JSON clients read it exactly.
pub fn new_seed() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits as u64) & ((1u64 << 53) - 1)
}
