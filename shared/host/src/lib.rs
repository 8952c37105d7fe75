//! What every process hosting the service shares, whatever its store: the one runner of queued
//! jobs (local server, worker container, Lambda SQS handlers) and the one typed configuration.

pub mod config;
pub mod retrying;
pub mod runner;

pub use config::{Config, ConfigError, aws_service_config};
pub use retrying::{RetryPolicy, Retrying};
pub use runner::{
    Deletion, Delivery, Fate, JobHandler, MAX_HIDDEN, Policy, Polling, Runner, Work,
    hide_within_limit,
};
pub use tokio_util::sync::CancellationToken;

/// Resolves when the process is asked to stop: SIGTERM (ECS stopping a task, `kill`, a
/// container runtime) or Ctrl-C.
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
