//! Schedule kinds and their fire times.
//!
//! A schedule answers one question: given what has happened (when the actor last ran, whether
//! it ever succeeded), when is it next due? Everything is computed in UTC; cron expressions are
//! evaluated in the actor's IANA time zone so that "09:00 Europe/Paris" stays 09:00 across
//! daylight-saving changes (croner resolves gaps and overlaps).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Deserialize;

/// A schedule as written in the config (`[actors.schedule]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// Every `seconds`, plus a random delay of up to `jitter_seconds`.
    Interval {
        seconds: u64,
        #[serde(default)]
        jitter_seconds: u64,
    },
    /// A 5-field (minute) or 6-field (second) cron expression in an IANA time zone.
    Cron {
        expression: String,
        #[serde(default = "default_timezone")]
        timezone: String,
    },
    /// Once, when the actor is first seen (not again on restart).
    Immediate,
    /// Once, at an RFC 3339 instant.
    Once { at: String },
}

fn default_timezone() -> String {
    "UTC".to_owned()
}

/// Why a schedule is invalid; the caller adds the file and key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("interval `seconds` must be at least 1")]
    ZeroInterval,
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
    /// On a zero interval, an unparsable cron expression, an unknown time zone or a bad instant.
    pub fn from_spec(spec: &ScheduleSpec) -> Result<Self, ScheduleError> {
        match spec {
            ScheduleSpec::Interval {
                seconds,
                jitter_seconds,
            } => {
                if *seconds == 0 {
                    return Err(ScheduleError::ZeroInterval);
                }
                Ok(Self::Interval {
                    seconds: *seconds,
                    jitter_seconds: *jitter_seconds,
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
                    let extra = (*jitter_seconds as f64 * jitter.clamp(0.0, 1.0)) as i64;
                    Some(last + chrono::Duration::seconds(*seconds as i64 + extra))
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
            seconds: 60,
            jitter_seconds: 10,
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
