//! The project dashboard: progress, queues and the label distribution, from a handful of
//! counter rows (never a scan of items).

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::instrument;

use crate::access::Actor;
use crate::domain::labeling::{BoxOutcome, PrelabelOutcome, TaskKind};
use crate::domain::project::ProjectRecord;
use crate::keys::{self, attr, counter};
use crate::manifest::ManifestRecord;
use crate::service::{from_item, number};
use crate::usecases::projects::ProjectError;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pending {
    /// Never handed out in this round, and not waiting in a queue.
    pub not_in_task: u64,
    /// In a leased task.
    pub in_task: u64,
    /// In a waiting task of a priority queue.
    pub queued: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Queues {
    pub manual: u64,
    pub requeued: u64,
    pub clustered: u64,
    pub prelabeled: u64,
}

/// What labelers did with the prelabels that held one class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Acceptance {
    pub accepted: u64,
    pub edited: u64,
    pub replaced: u64,
    /// `accepted` out of all three; `None` before any.
    pub acceptance_rate: Option<f64>,
}

impl Acceptance {
    fn of_class(stats: &crate::ports::Attrs, class_id: u32) -> Self {
        let [accepted, edited, replaced] = PrelabelOutcome::ALL
            .map(|outcome| count(stats, &counter::prelabel(outcome.as_str(), class_id)));
        let judged = accepted + edited + replaced;
        Self {
            accepted,
            edited,
            replaced,
            acceptance_rate: (judged > 0).then(|| accepted as f64 / judged as f64),
        }
    }
}

/// What labelers did with the prelabel boxes of one class, box by box.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BoxAcceptance {
    /// Prelabel boxes of the class kept as they were.
    pub accepted: u64,
    /// Prelabel boxes of the class moved, resized or given another class.
    pub edited: u64,
    /// Prelabel boxes of the class removed.
    pub deleted: u64,
    /// Boxes of the class drawn where no prelabel box was.
    pub added: u64,
    /// `accepted` out of the prelabel boxes judged (accepted, edited, deleted); `None`
    /// before any.
    pub acceptance_rate: Option<f64>,
}

impl BoxAcceptance {
    /// The class's box counts; `None` while they are all zero.
    fn of_class(stats: &crate::ports::Attrs, class_id: u32) -> Option<Self> {
        let [accepted, edited, deleted, added] = BoxOutcome::ALL
            .map(|outcome| count(stats, &counter::prelabel_box(outcome.as_str(), class_id)));
        let judged = accepted + edited + deleted;
        (judged + added > 0).then(|| Self {
            accepted,
            edited,
            deleted,
            added,
            acceptance_rate: (judged > 0).then(|| accepted as f64 / judged as f64),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub project_id: String,
    pub status: &'static str,
    pub round: u32,
    pub total_items: u64,
    pub labeled: u64,
    pub skipped: u64,
    pub missing: u64,
    pub dropped: u64,
    pub pending: Pending,
    pub queues: Queues,
    pub label_distribution: BTreeMap<String, u64>,
    /// Per class name: submitted items whose prelabels held the class, by outcome.
    pub prelabel_acceptance: BTreeMap<String, Acceptance>,
    /// Per class name: prelabel boxes by what became of each, and boxes added; only the
    /// classes with a count.
    pub box_acceptance: BTreeMap<String, BoxAcceptance>,
    pub last_refresh_at: Option<String>,
    pub last_refresh_trigger: Option<String>,
    pub refresh: crate::usecases::refresh::RefreshView,
    /// With ML assist on: where its runs stand.
    pub ml: Option<MlProgress>,
}

/// ML assist on the dashboard; `GET /projects/{id}/ml` has the runs and curves.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MlProgress {
    /// The labeled count at which the next training runs.
    pub next_training_at: u64,
    /// The run under way, if any.
    pub active_run: Option<String>,
    /// The run whose model prelabels now, if any.
    pub model_run: Option<String>,
}

fn count(attrs: &crate::ports::Attrs, name: &str) -> u64 {
    number(attrs, name).max(0) as u64
}

/// The project dashboard's counts. Holds only the ports this area touches.
pub struct Dashboards<'a> {
    pub(crate) table: &'a std::sync::Arc<dyn crate::ports::Table>,
    pub(crate) blobs: &'a std::sync::Arc<dyn crate::ports::Blobs>,
    pub(crate) clock: &'a std::sync::Arc<dyn crate::ports::Clock>,
    pub(crate) config: &'a crate::service::ServiceConfig,
    pub(crate) projects: &'a crate::service::ProjectCache,
}

impl Dashboards<'_> {
    #[instrument(skip(self))]
    pub async fn dashboard(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Dashboard, ProjectError> {
        if !actor.is_admin() {
            return Err(ProjectError::Forbidden);
        }
        let project: ProjectRecord = self.reader().load_project(actor, project_id).await?;
        // Before the counters: see `refresh_view_with`.
        let refresh_status = self.statuses().read_refresh_status(project_id).await;
        let wanted = [
            keys::manifest(project_id),
            keys::cursor(project_id, project.round),
            keys::ml_state(project_id),
        ];
        let (found, stats) = futures::future::try_join(
            self.table.batch_get(&wanted),
            crate::usecases::labeling::stats::round_stats(
                self.table.as_ref(),
                project_id,
                project.round,
            ),
        )
        .await?;
        let find = |key: &crate::ports::Key| found.iter().find(|item| &item.key == key);
        let manifest: Option<ManifestRecord> = match find(&wanted[0]) {
            Some(item) => Some(from_item(item).map_err(ProjectError::Unavailable)?),
            None => None,
        };
        let empty = crate::ports::Attrs::new();
        let cursor = find(&wanted[1]).map_or(&empty, |item| &item.attrs);
        let ml = if project.ml_assist.enabled {
            let state: crate::usecases::ml::MlState = match find(&wanted[2]) {
                Some(item) => from_item(item).map_err(ProjectError::Unavailable)?,
                None => Default::default(),
            };
            Some(MlProgress {
                next_training_at: crate::usecases::ml::next_training_at(&project, &state),
                active_run: state.active_run,
                model_run: state
                    .model_run
                    .filter(|_| state.model_round == project.round),
            })
        } else {
            None
        };
        let stats = &stats;
        let total = manifest.as_ref().map_or(0, |m| m.total);
        let refresh =
            self.statuses()
                .refresh_view_with(&project, refresh_status, manifest.as_ref());
        let handed_out = count(cursor, attr::NEXT).min(total);
        let labeled = count(stats, counter::LABELED);
        let skipped = count(stats, counter::SKIPPED);
        let missing = count(stats, counter::MISSING);
        let in_task = count(stats, counter::IN_TASK);
        let queued = count(stats, counter::QUEUED);
        let label_distribution = project
            .classes
            .iter()
            .map(|class| {
                (
                    class.name.clone(),
                    count(stats, &crate::keys::counter::class(class.id)),
                )
            })
            .collect();
        let prelabel_acceptance = project
            .classes
            .iter()
            .map(|class| (class.name.clone(), Acceptance::of_class(stats, class.id)))
            .collect();
        let box_acceptance = project
            .classes
            .iter()
            .filter_map(|class| {
                BoxAcceptance::of_class(stats, class.id).map(|counts| (class.name.clone(), counts))
            })
            .collect();
        let not_in_task = total.saturating_sub(labeled + skipped + missing + in_task + queued);
        Ok(Dashboard {
            project_id: project.id.clone(),
            status: project.status.as_str(),
            round: project.round,
            total_items: total,
            labeled,
            skipped,
            missing,
            dropped: refresh.items_dropped,
            pending: Pending {
                not_in_task,
                in_task,
                queued,
            },
            queues: Queues {
                // Items an ML job queued ahead of the cursor have records but were never
                // handed out: not_in_task leaves them out, the cursor alone does not.
                manual: (total - handed_out).min(not_in_task)
                    + count(stats, TaskKind::Manual.queue_counter()),
                requeued: count(stats, TaskKind::Requeued.queue_counter()),
                clustered: count(stats, TaskKind::Clustered.queue_counter()),
                prelabeled: count(stats, TaskKind::Prelabeled.queue_counter()),
            },
            label_distribution,
            prelabel_acceptance,
            box_acceptance,
            last_refresh_at: refresh.last_refresh_at.clone(),
            last_refresh_trigger: refresh.last_refresh_trigger.clone(),
            refresh,
            ml,
        })
    }
}
