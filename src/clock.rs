//! Wall-clock time for schedules, and the tokio instant at which a wall-clock time comes.
//!
//! [`Clock::system`] reads the system clock on every call, so a step of that clock (an NTP
//! correction, the host resuming from suspend) shows in the next reading. Reading UTC once at
//! start and adding tokio's monotonic time since, as this module once did, never saw a step:
//! cron kept firing at the wrong wall-clock time until a restart.
//!
//! Tests pause tokio's clock and expect UTC to move with it (an interval actor fires every 5 s
//! of paused time). So the wall reading is corrected by how far tokio's clock stands from real
//! monotonic time (`tokio::time::Instant` minus `std::time::Instant`). Unpaused, which is
//! always the case outside tests, the two are the same clock and the correction is nil:
//! `now()` is the wall clock. Paused, the correction takes off the real time that passed and
//! adds what tokio advanced, so `now()` is the wall time at the pause plus tokio's advance, the
//! time tokio's sleeps see. This needs no test-only switch, and a clock shared by several
//! runtimes follows whichever one reads it. [`Clock::starting_at`] anchors a chosen time
//! instead, for tests that need a given date.
//!
//! Waits are tokio timers, which run on monotonic time (and, on Linux, stand still during
//! suspend): a sleep until [`Clock::instant_of`] does not shorten when the wall clock steps.
//! The scheduler never sleeps longer than `check_interval_seconds` and reads `now()` afresh
//! after each wake-up, so it acts on a step within one check interval.

use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The longest wait [`Clock::instant_of`] returns: 30 years, what tokio itself takes for "far
/// in the future". Only a circuit open for ever or a schedule decades away waits that long.
pub const LONGEST_WAIT: Duration = Duration::from_secs(30 * crate::limits::YEAR);

/// A UTC clock: the wall clock, or a chosen time advancing with tokio's clock.
#[derive(Clone)]
pub struct Clock {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    /// Read on every call, then corrected by [`tokio_offset`].
    Wall(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>),
    /// `utc` at tokio instant `instant`.
    Anchored {
        utc: DateTime<Utc>,
        instant: Instant,
    },
}

impl Clock {
    /// The system clock (`Utc::now()`), read on every call.
    pub fn system() -> Self {
        Self::with_source(Utc::now)
    }

    /// A wall clock read from `source` on every call, as [`Clock::system`] reads `Utc::now`;
    /// tests step it to stand for the system clock being stepped.
    pub fn with_source(source: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self {
            mode: Mode::Wall(Arc::new(source)),
        }
    }

    /// A clock reading `utc` now and advancing with tokio's clock; used by tests to start at
    /// a chosen instant.
    pub fn starting_at(utc: DateTime<Utc>) -> Self {
        Self {
            mode: Mode::Anchored {
                utc,
                instant: Instant::now(),
            },
        }
    }

    /// The current UTC time.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.mode {
            Mode::Wall(source) => source() + tokio_offset(),
            Mode::Anchored { utc, instant } => {
                *utc + delta(Instant::now().saturating_duration_since(*instant))
            }
        }
    }

    /// The tokio instant at which `at` will be reached (now, if it has passed), as things
    /// stand: a later step of the wall clock moves `at` but not this instant. A time more than
    /// [`LONGEST_WAIT`] away is placed there, since `Instant` may not reach it.
    pub fn instant_of(&self, at: DateTime<Utc>) -> Instant {
        let now = self.now();
        let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + wait.min(LONGEST_WAIT)
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            Mode::Wall(_) => f.write_str("Clock::Wall"),
            Mode::Anchored { utc, instant } => f
                .debug_struct("Clock::Anchored")
                .field("utc", utc)
                .field("instant", instant)
                .finish(),
        }
    }
}

/// How far tokio's clock stands ahead of real monotonic time: nil (up to the time between
/// the two reads) unless a test paused or advanced it.
fn tokio_offset() -> TimeDelta {
    let tokio = Instant::now().into_std();
    let real = std::time::Instant::now();
    match tokio.checked_duration_since(real) {
        Some(ahead) => delta(ahead),
        None => -delta(real - tokio),
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    /// A clock whose wall time is the value in the mutex, for the test to step.
    fn steppable(start: DateTime<Utc>) -> (Clock, Arc<Mutex<DateTime<Utc>>>) {
        let wall = Arc::new(Mutex::new(start));
        let source = wall.clone();
        (Clock::with_source(move || *source.lock().unwrap()), wall)
    }

    fn step(wall: &Mutex<DateTime<Utc>>, by: TimeDelta) {
        *wall.lock().unwrap() += by;
    }

    #[track_caller]
    fn assert_near(got: DateTime<Utc>, want: DateTime<Utc>, within: TimeDelta) {
        assert!(
            (got - want).abs() <= within,
            "{got} is not within {within} of {want}"
        );
    }

    /// `now()` follows the wall clock when it is stepped forward and back, as NTP may do.
    #[test]
    fn now_follows_steps_of_the_wall_clock() {
        let start = at("2026-03-02T08:00:00Z");
        let (clock, wall) = steppable(start);
        let second = TimeDelta::seconds(1);
        assert_near(clock.now(), start, second);
        step(&wall, TimeDelta::hours(1));
        assert_near(clock.now(), start + TimeDelta::hours(1), second);
        step(&wall, TimeDelta::hours(-2));
        assert_near(clock.now(), start - TimeDelta::hours(1), second);
    }

    /// A time 1 h ahead is due at once after the wall clock steps forward 1 h, and 2 h away
    /// after it steps back 2 h: waits are computed from the stepped time.
    #[test]
    fn instant_of_waits_from_the_stepped_wall_clock() {
        let start = at("2026-03-02T08:00:00Z");
        let (clock, wall) = steppable(start);
        let due = start + TimeDelta::hours(1);
        let wait = || {
            clock
                .instant_of(due)
                .saturating_duration_since(Instant::now())
        };
        let hour = Duration::from_secs(3600);
        let second = Duration::from_secs(1);
        assert!(wait().abs_diff(hour) <= second, "{:?}", wait());
        step(&wall, TimeDelta::hours(1));
        assert!(wait() <= second, "{:?}", wait());
        step(&wall, TimeDelta::hours(-2));
        assert!(wait().abs_diff(2 * hour) <= second, "{:?}", wait());
    }

    /// On a paused tokio clock the system clock moves with tokio's time, not with real time.
    #[tokio::test(start_paused = true)]
    async fn system_clock_follows_a_paused_tokio_clock() {
        let clock = Clock::system();
        let start = clock.now();
        let margin = TimeDelta::milliseconds(100);
        std::thread::sleep(Duration::from_millis(300));
        assert_near(clock.now(), start, margin);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_near(clock.now(), start + TimeDelta::hours(1), margin);
    }

    /// Unpaused, the system clock is the wall clock.
    #[tokio::test]
    async fn system_clock_reads_the_wall_clock() {
        let before = Utc::now();
        let now = Clock::system().now();
        let after = Utc::now();
        let margin = TimeDelta::milliseconds(100);
        assert!(before - margin <= now && now <= after + margin, "{now}");
    }
}
