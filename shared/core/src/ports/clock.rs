//! Time as a port: leases and schedules read it, tests move it.

/// Milliseconds since the Unix epoch.
pub type EpochMillis = i64;

/// Where "now" comes from. Leases compare against it inside write conditions.
pub trait Clock: Send + Sync {
    fn now(&self) -> EpochMillis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> EpochMillis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}
