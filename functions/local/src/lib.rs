//! The whole service in one process: the embedded adapters (SQLite table and queue, folder blob
//! store) or the AWS ones, the users file, the HTTP router and the job worker.

pub mod blob_server;
pub mod client;
pub mod cognito;
pub mod demo;
pub mod http;
pub mod ml_setup;
pub mod users;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use labeling_api::{AppState, router};
use labeling_core::ports::counting::CountingTable;
use labeling_core::ports::{Blobs, Clock, Queue, SystemClock};
use labeling_core::{Service, ServiceConfig};
use labeling_embedded::{Database, FolderBlobs, SqliteQueue, SqliteTable, UsersFile};
use labeling_host::{CancellationToken, Deletion, Policy, Polling, Retrying, Runner};
use tokio::net::TcpListener;

/// Deliveries of a job before it goes to the dead-letter queue.
const MAX_JOB_RECEIVES: u32 = 5;

/// Where the service keeps its data.
pub enum Store {
    /// SQLite, a folder and an in-process queue under the data directory.
    Embedded,
    /// DynamoDB, S3 and SQS (or an emulator at `settings.endpoint`).
    Aws {
        settings: labeling_aws::AwsSettings,
        /// Create the table, bucket and queues when missing.
        create_resources: bool,
    },
}

pub struct Options {
    pub data_dir: PathBuf,
    /// The first admin's token, used only when the data directory has no users yet.
    pub admin_token: Option<String>,
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    /// The largest body a signed upload URL takes (embedded store).
    pub max_upload_bytes: u64,
    /// Where ML assist's backbone comes from.
    pub ml_backbone: ml_setup::MlBackbone,
    /// How often the server checks whether an ML run is due.
    pub ml_check_interval: std::time::Duration,
    /// Sign-in with a Cognito user pool (its tokens accepted beside the users file's).
    pub cognito: Option<cognito::CognitoSettings>,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            admin_token: None,
            clock: Arc::new(SystemClock),
            store: Store::Embedded,
            max_upload_bytes: blob_server::MAX_UPLOAD_BYTES,
            ml_backbone: ml_setup::MlBackbone::Off(
                "this server was started without an ML backbone".to_owned(),
            ),
            ml_check_interval: ml_setup::ML_CHECK_INTERVAL,
            cognito: None,
        }
    }
}

/// How [`Local::serve_with`] meets clients.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub limits: http::Limits,
    /// The base of signed blob URLs (a proxy in front, a public name); the bound address
    /// when absent.
    pub public_url: Option<String>,
}

/// An opened data directory, ready to serve.
pub struct Local {
    pub service: Arc<Service>,
    pub blobs: Arc<dyn Blobs>,
    /// The folder store, when the embedded store serves signed URLs from this process.
    pub folder: Option<Arc<FolderBlobs>>,
    pub queue: Arc<dyn Queue>,
    /// Counts what the service asks of the table (writes and round trips), whatever the store.
    pub table: Arc<CountingTable>,
    /// The AWS adapters, on the AWS store (request counts, resource creation).
    pub aws: Option<labeling_aws::Aws>,
    pub users: Arc<UsersFile>,
    pub data_dir: PathBuf,
    /// Set when this start created the first admin: the token, to be shown once.
    pub new_admin_token: Option<String>,
    pub max_upload_bytes: u64,
    pub ml_backbone: ml_setup::MlBackbone,
    pub ml_check_interval: std::time::Duration,
    /// Who a request's bearer token is, and how the web app signs in.
    authenticator: Arc<dyn labeling_api::Authenticator>,
    sign_in: Arc<labeling_api::web::SignIn>,
}

/// The key that signs blob URLs: 32 random bytes, made on first start, readable by the owner
/// only (whoever reads it can sign a URL for any object the server serves).
fn signing_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("signing.key");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() >= 32 => {
            labeling_embedded::private_file::restrict(&path)
                .with_context(|| format!("restricting {}", path.display()))?;
            Ok(secret)
        }
        _ => {
            let secret: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                .iter()
                .flat_map(|u| u.as_bytes().to_vec())
                .collect();
            labeling_embedded::private_file::write(&path, &secret)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(secret)
        }
    }
}

impl Local {
    pub async fn open(options: Options) -> anyhow::Result<Self> {
        let data_dir = options.data_dir;
        // The data directory holds the users, the signing key and every label: its owner's only.
        labeling_embedded::private_file::create_directory(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        std::fs::create_dir_all(data_dir.join("buckets"))
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let users = Arc::new(UsersFile::open(data_dir.join("users.json"))?);
        let new_admin_token = if users.is_empty() {
            Some(users.create_first_admin(options.admin_token)?)
        } else {
            None
        };
        let (service, table, blobs, folder, queue, aws) = match options.store {
            Store::Embedded => {
                let database = Database::open(&data_dir.join("labeling.db"))?;
                let table = Arc::new(CountingTable::new(Arc::new(Retrying::new(
                    SqliteTable::new(database.clone()),
                ))));
                let sqlite_queue =
                    SqliteQueue::new(database, options.clock.clone(), MAX_JOB_RECEIVES);
                let folder = Arc::new(FolderBlobs::new(
                    &data_dir,
                    options.clock.clone(),
                    signing_secret(&data_dir)?,
                ));
                // Whatever the previous process was running died with it (killed, say): its
                // jobs run again at once rather than after their visibility timeout, and the
                // parts of its unfinished uploads go (a retried export starts a new upload).
                let released = sqlite_queue
                    .release_in_flight()
                    .context("releasing the jobs of the previous process")?;
                let aborted = folder.abort_uploads_older_than(std::time::SystemTime::now());
                if released > 0 || aborted > 0 {
                    tracing::info!(
                        released,
                        aborted,
                        "jobs and uploads of the previous process taken back"
                    );
                }
                let queue: Arc<dyn Queue> = Arc::new(sqlite_queue);
                let config = ServiceConfig::default();
                std::fs::create_dir_all(data_dir.join("buckets").join(&config.system_bucket))?;
                let service = Service::new(
                    table.clone(),
                    folder.clone(),
                    queue.clone(),
                    options.clock,
                    config,
                );
                (
                    service,
                    table,
                    folder.clone() as Arc<dyn Blobs>,
                    Some(folder),
                    queue,
                    None,
                )
            }
            Store::Aws {
                settings,
                create_resources,
            } => {
                let aws = labeling_aws::Aws::connect(&settings)
                    .await
                    .context("connecting to AWS")?;
                if create_resources {
                    aws.create_resources(&settings, MAX_JOB_RECEIVES)
                        .await
                        .context("creating the table, bucket and queues")?;
                }
                // One worker runs every job here: exports share the jobs queue.
                let config = labeling_host::aws_service_config(&settings, &settings.jobs_queue);
                let table = Arc::new(CountingTable::new(Arc::new(Retrying::new(
                    aws.table.clone(),
                ))));
                let service = Service::new(
                    table.clone(),
                    aws.blobs.clone(),
                    aws.queue.clone(),
                    options.clock,
                    config,
                );
                let blobs: Arc<dyn Blobs> = aws.blobs.clone();
                let queue: Arc<dyn Queue> = aws.queue.clone();
                (service, table, blobs, None, queue, Some(aws))
            }
        };
        let (authenticator, sign_in): (Arc<dyn labeling_api::Authenticator>, _) =
            match options.cognito {
                Some(settings) => {
                    let sign_in = settings.sign_in();
                    let tokens = cognito::CognitoTokens::connect(
                        settings,
                        labeling_api::auth::GroupRoles::new(
                            labeling_api::auth::DEFAULT_ADMIN_GROUP,
                            labeling_api::auth::DEFAULT_LABELER_GROUP,
                        ),
                        users::BearerTokens(users.clone()),
                    )
                    .await?;
                    (Arc::new(tokens), sign_in)
                }
                None => (
                    Arc::new(users::BearerTokens(users.clone())),
                    labeling_api::web::SignIn::Token,
                ),
            };
        Ok(Self {
            service: Arc::new(service),
            blobs,
            folder,
            queue,
            table,
            aws,
            users,
            data_dir,
            new_admin_token,
            max_upload_bytes: options.max_upload_bytes,
            ml_backbone: options.ml_backbone,
            ml_check_interval: options.ml_check_interval,
            authenticator,
            sign_in: Arc::new(sign_in),
        })
    }

    pub fn router(&self) -> axum::Router {
        let api = router(AppState {
            service: self.service.clone(),
            authenticator: self.authenticator.clone(),
            sign_in: self.sign_in.clone(),
        })
        .merge(users::routes(self.users.clone()));
        let api = match &self.folder {
            // The embedded store's signed URLs point at this server.
            Some(folder) => api.merge(
                Arc::new(
                    blob_server::BlobServer::new(folder.clone(), self.service.clone())
                        .with_max_upload_bytes(self.max_upload_bytes),
                )
                .routes(),
            ),
            None => api,
        };
        // The routes merged here refuse in problem+json too (a 405 on a blob URL or /users).
        api.layer(axum::middleware::map_response(
            labeling_api::routes::problem_for_every_error,
        ))
    }

    /// Points the embedded store's signed URLs at this server.
    pub fn set_public_base(&self, base: &str) {
        if let Some(folder) = &self.folder {
            folder.set_public_base(base);
        }
    }

    /// Serves HTTP on `listener` with the default limits and runs the job worker until
    /// `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_with(listener, ServeOptions::default(), shutdown)
            .await
    }

    /// [`Local::serve`] with chosen connection limits and public URL.
    pub async fn serve_with(
        self,
        listener: TcpListener,
        options: ServeOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let address = listener.local_addr().context("reading the bound address")?;
        match &options.public_url {
            Some(base) => self.set_public_base(base),
            None => self.set_public_base(&format!("http://{address}")),
        }
        let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(run_worker(
            self.service.clone(),
            self.queue.clone(),
            worker_stopped,
        ));
        let schedule = tokio::spawn(run_daily_refresh(self.service.clone(), self.queue.clone()));
        let backbone = tokio::spawn(ml_setup::provide_backbone(
            self.service.clone(),
            self.ml_backbone.clone(),
        ));
        let ml_checks = tokio::spawn(ml_setup::run_ml_checks(
            self.service.clone(),
            self.queue.clone(),
            self.ml_check_interval,
        ));
        let app = self.router();
        http::serve(listener, app, options.limits, shutdown).await;
        let _ = stop_worker.send(true);
        schedule.abort();
        ml_checks.abort();
        backbone.abort();
        let _ = worker.await;
        Ok(())
    }
}

/// The local stand-in for the AWS schedule: every day at 02:00 UTC, one job queues a refresh of
/// every project with incremental refresh on.
pub async fn run_daily_refresh(service: Arc<Service>, queue: Arc<dyn Queue>) {
    loop {
        let now = service.now();
        let next = labeling_core::usecases::refresh::next_daily_run(now);
        tokio::time::sleep(Duration::from_millis((next - now).max(1000) as u64)).await;
        let job = labeling_core::jobs::Job::RefreshAll {
            trigger: "schedule".to_owned(),
        };
        if let Err(error) = job
            .send(queue.as_ref(), &service.config().jobs_queue, Duration::ZERO)
            .await
        {
            tracing::error!(%error, "could not queue the daily refresh");
        }
    }
}

/// How the local server receives its jobs: up to ten at once, each receive waiting a second.
const POLLING: Polling = Polling {
    batch: 10,
    wait: Duration::from_secs(1),
};

/// Takes jobs off the queue and runs them with the one job runner (see `labeling_host::runner`)
/// until `stop` turns true: a failed job comes back after a backoff that doubles with each try
/// (5 s, 10 s, 20 s, ...) and is dead-lettered after five tries; a malformed one is dropped.
pub async fn run_worker(
    service: Arc<Service>,
    queue: Arc<dyn Queue>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let jobs = vec![service.config().jobs_queue.clone()];
    let runner = Runner::new(service, queue, Policy::default(), Deletion::ByRunner);
    let shutdown = CancellationToken::new();
    let cancel_on_stop = {
        let shutdown = shutdown.clone();
        async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
            shutdown.cancel();
        }
    };
    tokio::join!(runner.poll(&jobs, &POLLING, &shutdown), cancel_on_stop);
}
