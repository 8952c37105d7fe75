//! Use cases, one module per area; each public method opens a tracing span.

pub mod dashboard;
pub mod datasets;
pub mod export;
pub mod ingest;
pub mod labeling;
pub mod ml;
pub mod projects;
pub mod refresh;
pub mod review;

#[cfg(test)]
mod tests {
    /// The use cases' sources, as the text their error messages are written in: every `.rs`
    /// file under this folder, so a module split into a folder of files stays covered. This
    /// file is left out: its list of HTTP words would match itself.
    fn sources() -> Vec<(String, String)> {
        let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src/usecases"));
        let mut found = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|extension| extension == "rs")
                    && path != root.join("mod.rs")
                {
                    let source = std::fs::read_to_string(&path).unwrap();
                    found.push((path.display().to_string(), source));
                }
            }
        }
        found.sort();
        found
    }

    /// Use cases are not HTTP: a message that names a route or a status code is wrong under
    /// any other edge (a job, a Lambda event) and goes stale when the API changes.
    #[test]
    fn no_use_case_message_names_a_route_or_a_status_code() {
        let http_words = [
            "GET /",
            "POST /",
            "PUT /",
            "PATCH /",
            "DELETE /",
            "HTTP ",
            "status code",
        ];
        let sources = sources();
        assert!(sources.len() >= 8, "the use cases' sources were not found");
        for (file, source) in &sources {
            for (number, line) in source.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for word in http_words {
                    assert!(
                        !code.contains(word),
                        "{file}:{}: {word:?} in {line:?}",
                        number + 1
                    );
                }
            }
        }
    }
}
