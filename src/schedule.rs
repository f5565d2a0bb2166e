//! Schedule kinds and their fire times.
//!
//! A schedule answers one question: given what has happened (when the actor last ran, whether
//! it ever succeeded), when is it next due? Everything is computed in UTC; cron expressions are
//! evaluated in the actor's IANA time zone so that "09:00 Europe/Paris" stays 09:00 across
//! daylight-saving changes (croner resolves gaps and overlaps).

use crate::duration::DurationSpec;
use crate::limits;
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

/// A schedule as written in the config (`[actors.schedule]`). `type` is lowercase, like every
/// other enum of the config (`interval`, `cron`, `immediate`, `once`); the PascalCase
/// spelling of earlier versions (`Interval`, ...) is still accepted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// Every `seconds`, plus a random delay of up to `jitter_seconds`; each a number of
    /// seconds or a string with a unit (`"15m"`, see [`crate::duration`]). Kept as written
    /// (a negative integer included) until [`Schedule::from_spec`], whose errors name the
    /// field: serde cannot name a field inside an internally tagged enum.
    #[serde(alias = "Interval")]
    Interval {
        seconds: DurationSpec,
        #[serde(default)]
        jitter_seconds: DurationSpec,
    },
    /// A 5-field (minute) or 6-field (second) cron expression in an IANA time zone.
    #[serde(alias = "Cron")]
    Cron {
        expression: String,
        #[serde(default = "default_timezone")]
        timezone: String,
    },
    /// Once, when the actor is first seen (not again on restart).
    #[serde(alias = "Immediate")]
    Immediate,
    /// Once, at an RFC 3339 instant.
    #[serde(alias = "Once")]
    Once { at: String },
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// Why a schedule is invalid; the caller adds the file and key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    /// A number outside its range (see [`crate::limits`]); `field` is the key in the
    /// schedule table, `message` names the range.
    #[error("`{field}` {message}")]
    OutOfRange {
        field: &'static str,
        message: String,
    },
    /// A duration that is neither a number of seconds nor a string with a unit.
    #[error("`{field}`: {message}")]
    BadDuration {
        field: &'static str,
        message: String,
    },
    #[error(
        "invalid cron expression `{expression}`: {reason} (expected 5 fields `min hour day month weekday` or 6 with seconds first)"
    )]
    BadCron { expression: String, reason: String },
    #[error("unknown time zone `{0}` (expected an IANA name such as `Europe/Paris` or `UTC`)")]
    UnknownTimezone(String),
    #[error(
        "`at` = `{value}` is not an RFC 3339 instant (expected e.g. `2026-12-01T09:00:00Z`): {reason}"
    )]
    BadInstant { value: String, reason: String },
    #[error("cron expression `{0}` never fires")]
    NeverFires(String),
}

/// A validated schedule, ready to compute fire times.
#[derive(Debug, Clone)]
pub enum Schedule {
    Interval {
        seconds: u64,
        jitter_seconds: u64,
    },
    Cron {
        cron: Box<Cron>,
        expression: String,
        timezone: Tz,
    },
    Immediate,
    Once {
        at: DateTime<Utc>,
    },
}

/// `t` plus `seconds`, or `None` when that is past the last instant chrono represents (some
/// 260,000 years from now): a time that never comes. Config values are checked against
/// [`crate::limits`] at load; this keeps date arithmetic from panicking on any value anyway.
pub fn seconds_after(t: DateTime<Utc>, seconds: u64) -> Option<DateTime<Utc>> {
    let delta = TimeDelta::try_seconds(i64::try_from(seconds).ok()?)?;
    t.checked_add_signed(delta)
}

/// What the scheduler knows about an actor's past, to decide its next fire time.
#[derive(Debug, Clone, Copy, Default)]
pub struct History {
    /// Start of the last run, if any.
    pub last_run: Option<DateTime<Utc>>,
    /// Whether a run ever succeeded (ends `Immediate` and `Once` schedules).
    pub ever_succeeded: bool,
}

impl Schedule {
    /// Validates a spec.
    ///
    /// # Errors
    ///
    /// On an interval or jitter out of range ([`limits::INTERVAL_SECONDS`],
    /// [`limits::JITTER_SECONDS`], and no jitter longer than the interval), an unparsable cron
    /// expression, an unknown time zone or a bad instant.
    pub fn from_spec(spec: &ScheduleSpec) -> Result<Self, ScheduleError> {
        match spec {
            ScheduleSpec::Interval {
                seconds,
                jitter_seconds,
            } => {
                let out_of_range =
                    |field| move |message| ScheduleError::OutOfRange { field, message };
                let bad_duration =
                    |field| move |message| ScheduleError::BadDuration { field, message };
                let seconds = seconds.seconds().map_err(bad_duration("seconds"))?;
                let jitter_seconds = jitter_seconds
                    .seconds()
                    .map_err(bad_duration("jitter_seconds"))?;
                let seconds = limits::INTERVAL_SECONDS
                    .check(seconds)
                    .map_err(out_of_range("seconds"))?;
                let jitter_seconds = limits::JITTER_SECONDS
                    .at_most(seconds, "the interval `seconds`")
                    .check(jitter_seconds)
                    .map_err(out_of_range("jitter_seconds"))?;
                Ok(Self::Interval {
                    seconds,
                    jitter_seconds,
                })
            }
            ScheduleSpec::Cron {
                expression,
                timezone,
            } => {
                let tz: Tz = timezone
                    .parse()
                    .map_err(|_| ScheduleError::UnknownTimezone(timezone.clone()))?;
                let fields = expression.split_whitespace().count();
                if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
                    return Err(ScheduleError::BadCron {
                        expression: expression.clone(),
                        reason: format!("it has {fields} fields"),
                    });
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(expression)
                    .map_err(|err| ScheduleError::BadCron {
                        expression: expression.clone(),
                        reason: err.to_string(),
                    })?;
                let schedule = Self::Cron {
                    cron: Box::new(cron),
                    expression: expression.clone(),
                    timezone: tz,
                };
                if schedule.cron_after(Utc::now()).is_none() {
                    return Err(ScheduleError::NeverFires(expression.clone()));
                }
                Ok(schedule)
            }
            ScheduleSpec::Immediate => Ok(Self::Immediate),
            ScheduleSpec::Once { at } => DateTime::parse_from_rfc3339(at)
                .map(|t| Self::Once {
                    at: t.with_timezone(&Utc),
                })
                .map_err(|err| ScheduleError::BadInstant {
                    value: at.clone(),
                    reason: err.to_string(),
                }),
        }
    }

    /// The next fire time strictly after `after` for cron schedules.
    fn cron_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Self::Cron { cron, timezone, .. } = self else {
            return None;
        };
        let local = after.with_timezone(timezone);
        cron.find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// When the actor is next due, given its history and the current time; `None` when it never
    /// fires again. A time in the past means "due now": a fire missed while the server was down
    /// is made up once, not once per missed period. `jitter` is a value in `[0, 1)`.
    pub fn next_due(
        &self,
        history: History,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        match self {
            Self::Interval {
                seconds,
                jitter_seconds,
            } => match history.last_run {
                None => Some(now),
                Some(last) => {
                    // `as` saturates a float: the extra is at most `jitter_seconds`.
                    let extra = (*jitter_seconds as f64 * jitter.clamp(0.0, 1.0)) as u64;
                    seconds_after(last, seconds.saturating_add(extra))
                }
            },
            Self::Cron { .. } => match history.last_run {
                // First sight: the next occurrence from now, not one in the past.
                None => self.cron_after(now),
                Some(last) => self.cron_after(last),
            },
            Self::Immediate => (!history.ever_succeeded).then_some(now),
            Self::Once { at } => (!history.ever_succeeded).then_some(*at),
        }
    }

    /// The next `count` fire times from `now` if the actor ran at each of them, for `check`.
    pub fn upcoming(
        &self,
        history: History,
        now: DateTime<Utc>,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut history = history;
        while out.len() < count {
            let Some(next) = self.next_due(history, now, 0.0) else {
                break;
            };
            let next = next.max(now);
            out.push(next);
            history = History {
                last_run: Some(next),
                ever_succeeded: true,
            };
            if matches!(self, Self::Immediate | Self::Once { .. }) {
                break;
            }
        }
        out
    }

    /// The time zone fire times are shown in.
    pub fn timezone(&self) -> Tz {
        match self {
            Self::Cron { timezone, .. } => *timezone,
            _ => Tz::UTC,
        }
    }

    /// A short human description, e.g. `every 60s (jitter 5s)` or `cron "0 9 * * *" Europe/Paris`.
    pub fn describe(&self) -> String {
        match self {
            Self::Interval {
                seconds,
                jitter_seconds: 0,
            } => format!("every {seconds}s"),
            Self::Interval {
                seconds,
                jitter_seconds,
            } => format!("every {seconds}s (jitter up to {jitter_seconds}s)"),
            Self::Cron {
                expression,
                timezone,
                ..
            } => format!("cron \"{expression}\" in {timezone}"),
            Self::Immediate => "immediately, once".to_owned(),
            Self::Once { at } => format!("once at {}", at.to_rfc3339()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str, tz: &str) -> Schedule {
        Schedule::from_spec(&ScheduleSpec::Cron {
            expression: expr.into(),
            timezone: tz.into(),
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_keeps_local_time_across_dst() {
        // Paris leaves summer time on 2026-10-25: 09:00 local is 07:00Z before, 08:00Z after.
        let s = cron("0 9 * * *", "Europe/Paris");
        let times = s.upcoming(History::default(), utc("2026-10-24T12:00:00Z"), 2);
        assert_eq!(
            times,
            vec![utc("2026-10-25T08:00:00Z"), utc("2026-10-26T08:00:00Z")]
        );
        let times = s.upcoming(History::default(), utc("2026-10-23T12:00:00Z"), 1);
        assert_eq!(times, vec![utc("2026-10-24T07:00:00Z")]);
    }

    #[test]
    fn cron_in_spring_forward_gap_runs_after_the_gap() {
        // 2026-03-29 02:30 does not exist in Paris; the job runs at the first instant after.
        let s = cron("30 2 * * *", "Europe/Paris");
        let t = s.upcoming(History::default(), utc("2026-03-28T12:00:00Z"), 1)[0];
        assert_eq!(t, utc("2026-03-29T01:00:00Z"));
    }

    #[test]
    fn six_field_cron_has_seconds() {
        let s = cron("*/10 * * * * *", "UTC");
        let t = s.upcoming(History::default(), utc("2026-01-01T00:00:01Z"), 2);
        assert_eq!(
            t,
            vec![utc("2026-01-01T00:00:10Z"), utc("2026-01-01T00:00:20Z")]
        );
    }

    #[test]
    fn bad_cron_and_timezone_are_named() {
        let e = Schedule::from_spec(&ScheduleSpec::Cron {
            expression: "61 * * * *".into(),
            timezone: "UTC".into(),
        })
        .unwrap_err();
        assert!(matches!(e, ScheduleError::BadCron { .. }), "{e}");
        let e = Schedule::from_spec(&ScheduleSpec::Cron {
            expression: "* * *".into(),
            timezone: "UTC".into(),
        })
        .unwrap_err();
        assert!(e.to_string().contains("3 fields"), "{e}");
        let e = Schedule::from_spec(&ScheduleSpec::Cron {
            expression: "0 9 * * *".into(),
            timezone: "Mars/Olympus".into(),
        })
        .unwrap_err();
        assert_eq!(e, ScheduleError::UnknownTimezone("Mars/Olympus".into()));
    }

    #[test]
    fn interval_continues_from_last_run() {
        let s = Schedule::from_spec(&ScheduleSpec::Interval {
            seconds: DurationSpec::Seconds(60),
            jitter_seconds: DurationSpec::Text("10s".into()),
        })
        .unwrap();
        let now = utc("2026-01-01T00:00:30Z");
        assert_eq!(s.next_due(History::default(), now, 0.0), Some(now));
        let h = History {
            last_run: Some(utc("2026-01-01T00:00:00Z")),
            ever_succeeded: true,
        };
        assert_eq!(s.next_due(h, now, 0.0), Some(utc("2026-01-01T00:01:00Z")));
        assert_eq!(s.next_due(h, now, 0.5), Some(utc("2026-01-01T00:01:05Z")));
    }

    /// An interval or jitter out of range is refused naming the field, so that the config
    /// error can name `actors[N].schedule.seconds`.
    #[test]
    fn interval_out_of_range_names_the_field() {
        let interval = |seconds, jitter_seconds| {
            Schedule::from_spec(&ScheduleSpec::Interval {
                seconds: DurationSpec::Seconds(seconds),
                jitter_seconds: DurationSpec::Seconds(jitter_seconds),
            })
        };
        let field = |r: Result<Schedule, ScheduleError>| match r.unwrap_err() {
            ScheduleError::OutOfRange { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(field(interval(0, 0)), "seconds");
        assert_eq!(field(interval(i64::MAX, 0)), "seconds");
        assert_eq!(field(interval(60, 61)), "jitter_seconds");
        assert_eq!(field(interval(60, -1)), "jitter_seconds");
        assert!(interval(60, 60).is_ok());
    }

    /// An interval that bypassed validation and ends past chrono's last date never fires
    /// again instead of panicking, and `check`'s list of fire times stops there.
    #[test]
    fn interval_past_the_end_of_time_never_fires_again() {
        let now = utc("2026-01-01T00:00:00Z");
        let huge = Schedule::Interval {
            seconds: u64::MAX,
            jitter_seconds: u64::MAX,
        };
        let ran = History {
            last_run: Some(now),
            ever_succeeded: true,
        };
        assert_eq!(huge.next_due(ran, now, 0.99), None);
        assert_eq!(huge.upcoming(History::default(), now, 5), vec![now]);
        let ten_years = Schedule::Interval {
            seconds: 10 * limits::YEAR,
            jitter_seconds: 0,
        };
        let near_the_end = History {
            last_run: Some(DateTime::<Utc>::MAX_UTC - TimeDelta::days(1)),
            ever_succeeded: true,
        };
        assert_eq!(ten_years.next_due(near_the_end, now, 0.0), None);
    }

    #[test]
    fn immediate_and_once_stop_after_success() {
        let now = utc("2026-01-01T00:00:00Z");
        let done = History {
            last_run: Some(now),
            ever_succeeded: true,
        };
        let failed = History {
            last_run: Some(now),
            ever_succeeded: false,
        };
        assert_eq!(
            Schedule::Immediate.next_due(History::default(), now, 0.0),
            Some(now)
        );
        assert_eq!(Schedule::Immediate.next_due(failed, now, 0.0), Some(now));
        assert_eq!(Schedule::Immediate.next_due(done, now, 0.0), None);
        let at = utc("2026-06-01T00:00:00Z");
        assert_eq!(
            Schedule::Once { at }.next_due(History::default(), now, 0.0),
            Some(at)
        );
        assert_eq!(Schedule::Once { at }.next_due(done, now, 0.0), None);
    }
}
