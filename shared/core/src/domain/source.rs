//! Dataset sources: a bucket prefix with a glob (`s3://photos/cats/**`), or a local folder
//! (`file:///abs/path/**`) where the embedded store allows it.
//!
//! Glob rules: `*` and `?` stay within one path segment, `**` crosses segments, and `**/` also
//! matches no segment at all, so `s3://b/**/*.jpg` finds `a.jpg` at the top as well.

use regex::Regex;

/// Extensions (lower case) of the files that count as images.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "bmp", "gif", "tif", "tiff", "webp",
];

/// Where a project's images come from.
#[derive(Debug, Clone)]
pub struct Source {
    /// As the user wrote it.
    uri: String,
    /// The bucket the keys live in (for `file://` sources, `file://` plus the folder).
    bucket: String,
    /// The literal part of the key pattern before the first wildcard: the listing prefix.
    list_prefix: String,
    /// The glob as a regular expression, compiled on first use: only listing needs it, and
    /// checkout parses sources on every request.
    pattern: String,
    matcher: std::sync::OnceLock<Option<Regex>>,
}

/// Two sources are the same when they were written the same way; the rest derives from it.
impl PartialEq for Source {
    fn eq(&self, other: &Self) -> bool {
        self.uri == other.uri
    }
}

/// Stored as the URI the user wrote, so stored projects read as they always did.
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.uri)
    }
}

/// A stored source was checked when the project was created: read back, it is parsed once
/// (local folders included; whether this deployment serves them is checked where they are
/// used, [`Source::allowed`]).
impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let uri = String::deserialize(deserializer)?;
        Source::parse(&uri, true).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("a source is s3://bucket/prefix-with-glob or file:///absolute/path/glob")]
    Scheme,
    #[error("bucket names are 3 to 63 lower-case letters, digits, dots and dashes")]
    BucketName,
    #[error("local folders are not allowed as a source in this deployment")]
    FileNotAllowed,
    #[error("the path must not contain '..' segments")]
    ParentSegment,
}

impl Source {
    pub fn parse(uri: &str, allow_file: bool) -> Result<Self, SourceError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, pattern) = rest.split_once('/').unwrap_or((rest, "**"));
            if !valid_bucket_name(bucket) {
                return Err(SourceError::BucketName);
            }
            let pattern = if pattern.is_empty() { "**" } else { pattern };
            Self::build(uri, bucket.to_owned(), pattern)
        } else if let Some(path) = uri.strip_prefix("file://") {
            if !allow_file {
                return Err(SourceError::FileNotAllowed);
            }
            if !path.starts_with('/') {
                return Err(SourceError::Scheme);
            }
            // The folder is everything before the first segment holding a wildcard.
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let literal = segments.iter().take_while(|s| !has_wildcard(s)).count();
            let (folder, pattern) = if literal == segments.len() {
                (segments.join("/"), "**".to_owned())
            } else {
                (segments[..literal].join("/"), segments[literal..].join("/"))
            };
            Self::build(uri, format!("file:///{folder}"), &pattern)
        } else {
            Err(SourceError::Scheme)
        }
    }

    /// This source, where the deployment allows it (`allow_file`: local folders too).
    pub fn allowed(&self, allow_file: bool) -> Result<&Self, SourceError> {
        if self.is_local_folder() && !allow_file {
            Err(SourceError::FileNotAllowed)
        } else {
            Ok(self)
        }
    }

    fn build(uri: &str, bucket: String, pattern: &str) -> Result<Self, SourceError> {
        if pattern.split('/').any(|segment| segment == "..") {
            return Err(SourceError::ParentSegment);
        }
        let literal_end = pattern.find(['*', '?', '[']).unwrap_or(pattern.len());
        let list_prefix = match pattern[..literal_end].rfind('/') {
            Some(slash) if literal_end < pattern.len() => pattern[..=slash].to_owned(),
            _ if literal_end < pattern.len() => String::new(),
            _ => pattern.to_owned(),
        };
        Ok(Self {
            uri: uri.to_owned(),
            bucket,
            list_prefix,
            pattern: glob_to_regex(pattern),
            matcher: std::sync::OnceLock::new(),
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }
    /// A folder of the machine the service runs on, which only the embedded deployment allows.
    pub fn is_local_folder(&self) -> bool {
        self.uri.starts_with("file://")
    }
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
    pub fn list_prefix(&self) -> &str {
        &self.list_prefix
    }

    /// True when `key` matches the glob and names an image file that can be an item: a key
    /// with a line break cannot be stored in a manifest chunk (one key a line).
    pub fn admits(&self, key: &str) -> bool {
        is_image_key(key)
            && !key.contains(['\n', '\r'])
            && self
                .matcher
                .get_or_init(|| Regex::new(&self.pattern).ok())
                .as_ref()
                .is_some_and(|matcher| matcher.is_match(key))
    }

    /// The `s3://` (or `file://`) URI of a key of this source.
    pub fn object_uri(&self, key: &str) -> String {
        if self.bucket.starts_with("file://") {
            format!("{}/{key}", self.bucket)
        } else {
            format!("s3://{}/{key}", self.bucket)
        }
    }
}

fn has_wildcard(segment: &str) -> bool {
    segment.contains(['*', '?', '['])
}

pub fn is_image_key(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() || !extension.is_empty() => IMAGE_EXTENSIONS
            .iter()
            .any(|e| e.eq_ignore_ascii_case(extension)),
        _ => false,
    }
}

pub fn valid_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A pattern that ends in `/` (or is a plain prefix like `cats/`) means everything below it.
fn glob_to_regex(pattern: &str) -> String {
    let pattern = if pattern.ends_with('/') {
        format!("{pattern}**")
    } else {
        pattern.to_owned()
    };
    let mut regex = String::from("^");
    let mut rest = pattern.as_str();
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("**/") {
            regex.push_str("(?:.*/)?");
            rest = after;
        } else if let Some(after) = rest.strip_prefix("**") {
            regex.push_str(".*");
            rest = after;
        } else {
            match c {
                '*' => regex.push_str("[^/]*"),
                '?' => regex.push_str("[^/]"),
                other => regex.push_str(&regex::escape(&other.to_string())),
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    regex.push('$');
    regex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_source_is_its_uri_and_reads_back_parsed() {
        let source = Source::parse("s3://photos/cats/**", false).unwrap();
        let stored = serde_json::to_value(&source).unwrap();
        assert_eq!(stored, serde_json::json!("s3://photos/cats/**"));
        let read: Source = serde_json::from_value(stored).unwrap();
        assert_eq!(read, source);
        assert_eq!(read.bucket(), "photos");
        assert_eq!(read.list_prefix(), "cats/");
        assert!(serde_json::from_value::<Source>(serde_json::json!("ftp://x")).is_err());
    }

    #[test]
    fn a_stored_local_folder_is_refused_where_the_deployment_does_not_serve_them() {
        let folder: Source = serde_json::from_value(serde_json::json!("file:///data/**")).unwrap();
        assert_eq!(
            folder.allowed(false).err(),
            Some(SourceError::FileNotAllowed)
        );
        assert!(folder.allowed(true).is_ok());
    }

    fn admitted(uri: &str, keys: &[&str]) -> Vec<String> {
        let source = Source::parse(uri, true).unwrap();
        keys.iter()
            .filter(|k| k.starts_with(source.list_prefix()) && source.admits(k))
            .map(|k| k.to_string())
            .collect()
    }

    const KEYS: &[&str] = &[
        "a.jpg",
        "cats/1.jpg",
        "cats/deep/2.PNG",
        "cats/notes.txt",
        "2024/x.jpg",
        "2024/sub/y.jpg",
        "2024/z.png",
        "noext",
    ];

    #[test]
    fn double_star_below_a_prefix_takes_every_image_below_it() {
        assert_eq!(
            admitted("s3://photos/cats/**", KEYS),
            ["cats/1.jpg", "cats/deep/2.PNG"]
        );
        assert_eq!(
            Source::parse("s3://photos/cats/**", false)
                .unwrap()
                .list_prefix(),
            "cats/"
        );
    }

    #[test]
    fn double_star_slash_matches_the_top_level_too() {
        assert_eq!(
            admitted("s3://photos/**/*.*", KEYS),
            [
                "a.jpg",
                "cats/1.jpg",
                "cats/deep/2.PNG",
                "2024/x.jpg",
                "2024/sub/y.jpg",
                "2024/z.png"
            ]
        );
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        assert_eq!(admitted("s3://photos/2024/*.jpg", KEYS), ["2024/x.jpg"]);
    }

    #[test]
    fn bad_sources_are_refused() {
        assert_eq!(
            Source::parse("http://x/y", true).unwrap_err(),
            SourceError::Scheme
        );
        assert_eq!(
            Source::parse("s3://UPPER/x", true).unwrap_err(),
            SourceError::BucketName
        );
        assert_eq!(
            Source::parse("file:///tmp/**", false).unwrap_err(),
            SourceError::FileNotAllowed
        );
        assert_eq!(
            Source::parse("s3://photos/../x/**", true).unwrap_err(),
            SourceError::ParentSegment
        );
    }

    #[test]
    fn file_sources_split_folder_and_pattern() {
        let source = Source::parse("file:///data/pics/**/*.png", true).unwrap();
        assert_eq!(source.bucket(), "file:///data/pics");
        assert_eq!(source.list_prefix(), "");
        assert!(source.admits("a/b.png"));
        assert!(!source.admits("a/b.jpg"));
    }
}
