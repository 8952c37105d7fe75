//! Why a refresh ran: a closed set, parsed once where a job arrives and stored by name.

use serde::{Deserialize, Serialize};

/// What started a refresh (or the first listing). Stored in the manifest and in the last
/// refresh's status under the snake_case names clients see on the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshTrigger {
    /// The first listing, when the project was created.
    Create,
    /// An admin asked for it.
    OnDemand,
    /// New objects arrived (S3 notifications, uploads into a dataset).
    ObjectCreated,
    /// Labelers ran low on fresh items.
    LowWater,
    /// A failed project was retried.
    Retry,
    /// The daily schedule.
    Schedule,
    /// A trigger this code does not know, stored by an older or newer version: such records
    /// stay readable. The default only so that statuses can be built field by field; every
    /// refresh names its own trigger.
    #[default]
    #[serde(other)]
    Other,
}

impl RefreshTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshTrigger::Create => "create",
            RefreshTrigger::OnDemand => "on_demand",
            RefreshTrigger::ObjectCreated => "object_created",
            RefreshTrigger::LowWater => "low_water",
            RefreshTrigger::Retry => "retry",
            RefreshTrigger::Schedule => "schedule",
            RefreshTrigger::Other => "other",
        }
    }

    /// The trigger a job names; `None` for a name outside the set.
    pub fn parse(name: &str) -> Option<Self> {
        [
            RefreshTrigger::Create,
            RefreshTrigger::OnDemand,
            RefreshTrigger::ObjectCreated,
            RefreshTrigger::LowWater,
            RefreshTrigger::Retry,
            RefreshTrigger::Schedule,
        ]
        .into_iter()
        .find(|trigger| trigger.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::RefreshTrigger;

    #[test]
    fn triggers_are_stored_by_the_names_they_always_had() {
        for name in [
            "create",
            "on_demand",
            "object_created",
            "low_water",
            "retry",
            "schedule",
        ] {
            let trigger = RefreshTrigger::parse(name).unwrap();
            assert_eq!(serde_json::to_value(trigger).unwrap(), name);
            let read: RefreshTrigger = serde_json::from_value(name.into()).unwrap();
            assert_eq!(read, trigger);
        }
        assert_eq!(RefreshTrigger::parse("whenever"), None);
        let foreign: RefreshTrigger = serde_json::from_value("whenever".into()).unwrap();
        assert_eq!(foreign, RefreshTrigger::Other);
    }
}
