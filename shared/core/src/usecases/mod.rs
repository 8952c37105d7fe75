//! Use cases, one module per area; each public method opens a tracing span.

pub mod dashboard;
pub mod datasets;
pub mod export;
pub mod ingest;
pub mod labeling;
pub mod projects;
pub mod refresh;
pub mod review;

#[cfg(test)]
mod tests {
    /// The use cases' sources, as the text their error messages are written in.
    const SOURCES: [(&str, &str); 18] = [
        ("dashboard.rs", include_str!("dashboard.rs")),
        ("datasets.rs", include_str!("datasets.rs")),
        ("export/coco.rs", include_str!("export/coco.rs")),
        ("export/jsonl.rs", include_str!("export/jsonl.rs")),
        ("export/mod.rs", include_str!("export/mod.rs")),
        (
            "export/part_writer.rs",
            include_str!("export/part_writer.rs"),
        ),
        ("export/requests.rs", include_str!("export/requests.rs")),
        ("export/run.rs", include_str!("export/run.rs")),
        ("export/snapshot.rs", include_str!("export/snapshot.rs")),
        ("ingest.rs", include_str!("ingest.rs")),
        ("labeling.rs", include_str!("labeling.rs")),
        ("projects.rs", include_str!("projects.rs")),
        ("refresh/events.rs", include_str!("refresh/events.rs")),
        ("refresh/lease.rs", include_str!("refresh/lease.rs")),
        ("refresh/merge.rs", include_str!("refresh/merge.rs")),
        ("refresh/mod.rs", include_str!("refresh/mod.rs")),
        ("refresh/requests.rs", include_str!("refresh/requests.rs")),
        ("review.rs", include_str!("review.rs")),
    ];

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
        for (file, source) in SOURCES {
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
