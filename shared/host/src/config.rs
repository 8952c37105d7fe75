//! The one typed configuration of the AWS processes (the Lambda functions and the worker
//! container), read from the environment here and nowhere else, and the one way every host
//! turns AWS settings into the service's configuration. A missing or malformed variable is an
//! error that names it.
//!
//! The `labeling` binary reads its flags, with their environment fallbacks, through its own
//! command line (functions/local/src/main.rs) and builds the service's configuration on AWS
//! with [`aws_service_config`] too.

use std::net::SocketAddr;

use labeling_aws::AwsSettings;
use labeling_core::ServiceConfig;

/// A variable of the environment that is missing or cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the environment variable {0} is not set")]
    Missing(&'static str),
    /// The value is not repeated: it may be a secret.
    #[error("the environment variable {name} is malformed: {reason}")]
    Malformed { name: &'static str, reason: String },
}

/// Everything the AWS processes read from their environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `LABELING_TABLE`, `LABELING_BUCKET`, `LABELING_JOBS_QUEUE` (required), `AWS_REGION`
    /// (default us-east-1), `LABELING_AWS_ENDPOINT` (an emulator; optional).
    pub aws: AwsSettings,
    /// `LABELING_EXPORTS_QUEUE`: the queue of export jobs; the jobs queue when unset.
    pub exports_queue: String,
    /// `LABELING_ML_QUEUE`: the queue of ML jobs (the GPU worker's); the jobs queue when unset.
    pub ml_queue: String,
    /// `LABELING_ORT_DYLIB` (else `ORT_DYLIB_PATH`, which the worker image sets) and
    /// `LABELING_BACKBONE`: ONNX Runtime's library and the backbone the worker embeds with.
    pub ml_dylib: Option<std::path::PathBuf>,
    pub ml_backbone: Option<std::path::PathBuf>,
    /// `LABELING_DETECTION_BACKBONE`: the backbone whose feature maps box prelabels read.
    pub ml_detection_backbone: Option<std::path::PathBuf>,
    /// `LABELING_WORKER_QUEUES` (comma-separated), else `LABELING_ML_QUEUE`, else the jobs
    /// queue: what the worker container polls.
    pub worker_queues: Vec<String>,
    /// `LABELING_ADMIN_GROUP` (default `labeling-admins`): the identity provider's group whose
    /// members are admins.
    pub admin_group: String,
    /// `LABELING_LABELER_GROUP` (default `labelers`): the group whose members are labelers.
    pub labeler_group: String,
    /// `LABELING_COGNITO_CLIENT_ID`: the user pool's app client the web app signs in with
    /// (unset on a stack whose tokens come from another OIDC provider).
    pub cognito_client_id: Option<String>,
    /// `LABELING_COGNITO_ENDPOINT` (default `https://cognito-idp.REGION.amazonaws.com/`):
    /// where the web app sends its sign-in requests.
    pub cognito_endpoint: String,
    /// `AWS_LAMBDA_RUNTIME_API`: set by Lambda; its presence means "serve as a Lambda function".
    pub in_lambda: bool,
    /// `LABELING_ADDR` (default 127.0.0.1:8080): where an HTTP function listens when tried out
    /// outside Lambda.
    pub addr: SocketAddr,
    /// `LABELING_JOB_SECONDS` (default 600): how long one run of a long job works before it
    /// saves its progress and continues in a new message; under the function's timeout.
    pub job_time_budget: std::time::Duration,
}

impl Config {
    /// From the process's environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Config::from_env`], reading each variable through `lookup`. Empty or blank values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let aws = AwsSettings {
            table: required("LABELING_TABLE")?,
            bucket: required("LABELING_BUCKET")?,
            jobs_queue: required("LABELING_JOBS_QUEUE")?,
            region: get("AWS_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
            endpoint: get("LABELING_AWS_ENDPOINT"),
        };
        let worker_queues = match get("LABELING_WORKER_QUEUES") {
            Some(list) => queue_list("LABELING_WORKER_QUEUES", &list)?,
            None => vec![get("LABELING_ML_QUEUE").unwrap_or_else(|| aws.jobs_queue.clone())],
        };
        let addr = match get("LABELING_ADDR") {
            Some(text) => text.parse().map_err(|error| ConfigError::Malformed {
                name: "LABELING_ADDR",
                reason: format!("not a HOST:PORT socket address ({error})"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let job_time_budget = match get("LABELING_JOB_SECONDS") {
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|seconds| *seconds <= 12 * 3600)
                .map(std::time::Duration::from_secs)
                .ok_or(ConfigError::Malformed {
                    name: "LABELING_JOB_SECONDS",
                    reason: "not a number of seconds from 0 to 43200".to_owned(),
                })?,
            None => labeling_core::service::JOB_TIME_BUDGET,
        };
        Ok(Self {
            exports_queue: get("LABELING_EXPORTS_QUEUE").unwrap_or_else(|| aws.jobs_queue.clone()),
            ml_queue: get("LABELING_ML_QUEUE").unwrap_or_else(|| aws.jobs_queue.clone()),
            ml_dylib: get("LABELING_ORT_DYLIB")
                .or_else(|| get("ORT_DYLIB_PATH"))
                .map(std::path::PathBuf::from),
            ml_backbone: get("LABELING_BACKBONE").map(std::path::PathBuf::from),
            ml_detection_backbone: get("LABELING_DETECTION_BACKBONE").map(std::path::PathBuf::from),
            worker_queues,
            admin_group: get("LABELING_ADMIN_GROUP")
                .unwrap_or_else(|| "labeling-admins".to_owned()),
            labeler_group: get("LABELING_LABELER_GROUP").unwrap_or_else(|| "labelers".to_owned()),
            cognito_client_id: get("LABELING_COGNITO_CLIENT_ID"),
            cognito_endpoint: get("LABELING_COGNITO_ENDPOINT")
                .unwrap_or_else(|| format!("https://cognito-idp.{}.amazonaws.com/", aws.region)),
            in_lambda: lookup("AWS_LAMBDA_RUNTIME_API").is_some(),
            addr,
            job_time_budget,
            aws,
        })
    }

    /// The service's configuration on these AWS resources.
    pub fn service_config(&self) -> ServiceConfig {
        ServiceConfig {
            job_time_budget: self.job_time_budget,
            ml_queue: self.ml_queue.clone(),
            ..aws_service_config(&self.aws, &self.exports_queue)
        }
    }
}

/// The service's configuration on AWS resources, the same for every host: the bucket for its
/// own objects, the two queues, and no `file://` sources (a Lambda function has no folders
/// of the user's to read).
pub fn aws_service_config(settings: &AwsSettings, exports_queue: &str) -> ServiceConfig {
    ServiceConfig {
        system_bucket: settings.bucket.clone(),
        jobs_queue: settings.jobs_queue.clone(),
        exports_queue: exports_queue.to_owned(),
        ml_queue: settings.jobs_queue.clone(),
        allow_file_sources: false,
        ..ServiceConfig::default()
    }
}

/// A comma-separated list of queue names or URLs, none of them empty.
fn queue_list(name: &'static str, list: &str) -> Result<Vec<String>, ConfigError> {
    let queues: Vec<String> = list.split(',').map(|q| q.trim().to_owned()).collect();
    if queues.iter().any(String::is_empty) {
        return Err(ConfigError::Malformed {
            name,
            reason: "an empty queue in the comma-separated list".to_owned(),
        });
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(var, _)| var == name)
                .map(|(_, value)| value.clone())
        })
    }

    const REQUIRED: [(&str, &str); 3] = [
        ("LABELING_TABLE", "t"),
        ("LABELING_BUCKET", "b"),
        (
            "LABELING_JOBS_QUEUE",
            "https://sqs.eu-west-1.amazonaws.com/1/jobs",
        ),
    ];

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        for missing in ["LABELING_TABLE", "LABELING_BUCKET", "LABELING_JOBS_QUEUE"] {
            let vars: Vec<_> = REQUIRED
                .iter()
                .copied()
                .filter(|(name, _)| *name != missing)
                .collect();
            let error = config(&vars).unwrap_err();
            assert_eq!(error, ConfigError::Missing(missing));
            assert!(error.to_string().contains(missing), "{error}");
        }
    }

    #[test]
    fn a_blank_required_variable_counts_as_missing() {
        let mut vars = REQUIRED.to_vec();
        vars[1].1 = "  ";
        assert_eq!(
            config(&vars).unwrap_err(),
            ConfigError::Missing("LABELING_BUCKET")
        );
    }

    #[test]
    fn a_malformed_variable_is_an_error_naming_it_without_its_value() {
        let cases = [
            ("LABELING_ADDR", "localhost-8080"),
            ("LABELING_WORKER_QUEUES", "ml,,jobs"),
            ("LABELING_WORKER_QUEUES", ","),
            ("LABELING_JOB_SECONDS", "ten minutes"),
            ("LABELING_JOB_SECONDS", "86400"),
        ];
        for (name, value) in cases {
            let mut vars = REQUIRED.to_vec();
            vars.push((name, value));
            let error = config(&vars).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Malformed { name: named, .. } if *named == name),
                "{name}={value}: {error:?}"
            );
            let text = error.to_string();
            assert!(text.contains(name), "{text}");
            assert!(!text.contains(value), "{text} repeats the value");
        }
    }

    #[test]
    fn defaults_fill_what_is_optional() {
        let config = config(&REQUIRED).unwrap();
        assert_eq!(config.aws.region, "us-east-1");
        assert_eq!(config.aws.endpoint, None);
        assert_eq!(config.exports_queue, config.aws.jobs_queue);
        assert_eq!(
            config.worker_queues,
            std::slice::from_ref(&config.aws.jobs_queue)
        );
        assert_eq!(config.admin_group, "labeling-admins");
        assert_eq!(config.labeler_group, "labelers");
        assert!(!config.in_lambda);
        assert_eq!(config.addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(
            config.service_config().job_time_budget,
            labeling_core::service::JOB_TIME_BUDGET
        );
    }

    #[test]
    fn the_worker_polls_the_queues_it_is_given_else_the_ml_queue() {
        let mut vars = REQUIRED.to_vec();
        vars.push(("LABELING_ML_QUEUE", "ml"));
        assert_eq!(config(&vars).unwrap().worker_queues, ["ml"]);
        vars.push(("LABELING_WORKER_QUEUES", "ml, jobs"));
        assert_eq!(config(&vars).unwrap().worker_queues, ["ml", "jobs"]);
    }

    #[test]
    fn every_host_builds_the_same_service_config_on_aws() {
        let mut vars = REQUIRED.to_vec();
        vars.push(("LABELING_EXPORTS_QUEUE", "exports"));
        let config = config(&vars).unwrap();
        let service = config.service_config();
        assert_eq!(service.system_bucket, "b");
        assert_eq!(service.jobs_queue, config.aws.jobs_queue);
        assert_eq!(service.exports_queue, "exports");
        assert!(!service.allow_file_sources);
    }
}
