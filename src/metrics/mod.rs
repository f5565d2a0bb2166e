//! Prometheus metrics: every number an operator needs, registered once per process.
//!
//! Names follow the Prometheus naming guide: one prefix (`botticelli_`), base units
//! (`_seconds`, `_bytes`), `_total` on counters. Labels are bounded sets: actor, narrative,
//! act, provider and model names come from the config and narrative files; outcomes and
//! statuses are fixed enums. No message text, post ids or run ids are labels.
//! `docs/metrics.md` lists them all with the question each answers.
//!
//! This file holds the [`Metrics`] registry and its label sets; `process` reads the process
//! figures from `/proc`, and `text` converts the OpenMetrics exposition to the classic
//! Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

mod process;
mod text;

pub use process::ProcessStats;
pub use text::openmetrics_to_prometheus_text;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabels {
    pub actor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorOutcome {
    pub actor: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorState {
    pub actor: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActLabels {
    pub narrative: String,
    pub act: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelOutcome {
    pub provider: String,
    pub model: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub revision: String,
}

fn duration_histogram() -> Histogram {
    // 10 ms .. ~11 min in 9 buckets: per-actor histograms are most of a scrape with
    // thousands of actors (18 buckets made a 2.1 MB scrape at 1,000 actors).
    Histogram::new(exponential_buckets(0.01, 4.0, 9))
}

fn lateness_histogram() -> Histogram {
    // 1 ms .. ~4 s in 7 buckets.
    Histogram::new(exponential_buckets(0.001, 4.0, 7))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub runs: Family<ActorOutcome, Counter>,
    pub run_duration: Family<ActorLabels, Histogram, fn() -> Histogram>,
    pub last_success: Family<ActorLabels, FloatGauge>,
    pub next_run: Family<ActorLabels, FloatGauge>,
    pub consecutive_failures: Family<ActorLabels, Gauge>,
    pub circuit: Family<ActorState, Gauge>,
    pub schedule_lateness: Family<ActorLabels, Histogram, fn() -> Histogram>,
    pub runs_in_flight: Gauge,
    pub act_duration: Family<ActLabels, Histogram, fn() -> Histogram>,
    pub llm_requests: Family<ModelOutcome, Counter>,
    pub llm_duration: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub llm_input_tokens: Family<ModelLabels, Counter>,
    pub llm_output_tokens: Family<ModelLabels, Counter>,
    pub llm_retries: Family<ProviderLabels, Counter>,
    pub llm_rate_limit_wait: Family<ProviderLabels, Counter<f64, AtomicU64>>,
    pub discord_messages: Family<OutcomeLabels, Counter>,
    pub discord_rate_limited: Counter,
    pub posts: Family<StatusLabels, Gauge>,
    pub posts_enqueued: Counter,
    pub posts_failed: Counter,
    pub duplicates_skipped: Counter,
    pub scheduler_last_tick: FloatGauge,
    /// Steps of the system clock back in time that the scheduler saw and corrected for.
    pub clock_steps_back: Counter,
    pub store_write_failures: Counter,
    pub store_writes_failing: Gauge,
    process_cpu: Counter<f64, AtomicU64>,
    process_rss: Gauge,
    process_vsize: Gauge,
    process_fds: Gauge,
    process_max_fds: Gauge,
    process_start: FloatGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(option_env!("BOT_SERVER_GIT_REVISION").unwrap_or("unknown"))
    }
}

impl Metrics {
    /// Registers every metric. `revision` is the git revision for `botticelli_build_info`.
    pub fn new(revision: &str) -> Self {
        let mut r = Registry::default();
        let m = Self {
            runs: Family::default(),
            run_duration: Family::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            next_run: Family::default(),
            consecutive_failures: Family::default(),
            circuit: Family::default(),
            schedule_lateness: Family::new_with_constructor(lateness_histogram),
            runs_in_flight: Gauge::default(),
            act_duration: Family::new_with_constructor(duration_histogram),
            llm_requests: Family::default(),
            llm_duration: Family::new_with_constructor(duration_histogram),
            llm_input_tokens: Family::default(),
            llm_output_tokens: Family::default(),
            llm_retries: Family::default(),
            llm_rate_limit_wait: Family::default(),
            discord_messages: Family::default(),
            discord_rate_limited: Counter::default(),
            posts: Family::default(),
            posts_enqueued: Counter::default(),
            posts_failed: Counter::default(),
            duplicates_skipped: Counter::default(),
            scheduler_last_tick: FloatGauge::default(),
            clock_steps_back: Counter::default(),
            store_write_failures: Counter::default(),
            store_writes_failing: Gauge::default(),
            process_cpu: Counter::default(),
            process_rss: Gauge::default(),
            process_vsize: Gauge::default(),
            process_fds: Gauge::default(),
            process_max_fds: Gauge::default(),
            process_start: FloatGauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "botticelli_actor_runs",
            "Actor runs finished, by actor and outcome (success, failure, timeout, cancelled)",
            m.runs.clone(),
        );
        r.register_with_unit(
            "botticelli_actor_run_duration",
            "Duration of actor runs",
            Unit::Seconds,
            m.run_duration.clone(),
        );
        r.register_with_unit(
            "botticelli_actor_last_success_timestamp",
            "Unix time of the actor's last successful run",
            Unit::Seconds,
            m.last_success.clone(),
        );
        r.register_with_unit(
            "botticelli_actor_next_run_timestamp",
            "Unix time the actor is next due (absent when it never fires again)",
            Unit::Seconds,
            m.next_run.clone(),
        );
        r.register(
            "botticelli_actor_consecutive_failures",
            "Failed runs in a row since the last success",
            m.consecutive_failures.clone(),
        );
        r.register(
            "botticelli_actor_circuit_state",
            "Circuit breaker state of the actor: 1 for the current state (closed, open, half_open), 0 for the others",
            m.circuit.clone(),
        );
        r.register_with_unit(
            "botticelli_actor_schedule_lateness",
            "How late runs start: actual start minus scheduled time",
            Unit::Seconds,
            m.schedule_lateness.clone(),
        );
        r.register(
            "botticelli_actor_runs_in_flight",
            "Actor runs in progress",
            m.runs_in_flight.clone(),
        );
        r.register_with_unit(
            "botticelli_act_duration",
            "Duration of narrative acts",
            Unit::Seconds,
            m.act_duration.clone(),
        );
        r.register(
            "botticelli_llm_requests",
            "LLM calls by provider, model and outcome (success or the error kind)",
            m.llm_requests.clone(),
        );
        r.register_with_unit(
            "botticelli_llm_request_duration",
            "Duration of successful LLM calls, retries and rate-limit waits included",
            Unit::Seconds,
            m.llm_duration.clone(),
        );
        r.register(
            "botticelli_llm_input_tokens",
            "Input (prompt) tokens reported by the provider",
            m.llm_input_tokens.clone(),
        );
        r.register(
            "botticelli_llm_output_tokens",
            "Output (completion) tokens reported by the provider",
            m.llm_output_tokens.clone(),
        );
        r.register(
            "botticelli_llm_retries",
            "LLM requests retried after a 429, 5xx or timeout",
            m.llm_retries.clone(),
        );
        r.register_with_unit(
            "botticelli_llm_rate_limit_wait",
            "Time spent waiting on the local per-provider rate limiter",
            Unit::Seconds,
            m.llm_rate_limit_wait.clone(),
        );
        r.register(
            "botticelli_discord_messages",
            "Discord messages sent, by outcome (success or the error kind)",
            m.discord_messages.clone(),
        );
        r.register(
            "botticelli_discord_rate_limited",
            "Discord 429 answers received",
            m.discord_rate_limited.clone(),
        );
        r.register(
            "botticelli_posts",
            "Posts in the queue by status",
            m.posts.clone(),
        );
        r.register(
            "botticelli_posts_enqueued",
            "Posts added to the queue",
            m.posts_enqueued.clone(),
        );
        r.register(
            "botticelli_posts_failed",
            "Posts Discord refused for good (400, 403, 404, 413), set aside as failed",
            m.posts_failed.clone(),
        );
        r.register(
            "botticelli_posts_duplicates_skipped",
            "Posts not queued because the same text was already queued or posted for the target",
            m.duplicates_skipped.clone(),
        );
        r.register_with_unit(
            "botticelli_scheduler_last_tick_timestamp",
            "Unix time of the scheduler loop's last iteration",
            Unit::Seconds,
            m.scheduler_last_tick.clone(),
        );
        r.register(
            "botticelli_clock_steps_back",
            "Times the system clock went back by more than a second (NTP, a VM resumed); due times were computed again from the new time",
            m.clock_steps_back.clone(),
        );
        r.register(
            "botticelli_store_write_failures",
            "Writes the state store could not make (disk full, I/O error, damaged database, lock held too long): what each carried is lost",
            m.store_write_failures.clone(),
        );
        r.register(
            "botticelli_store_writes_failing",
            "1 while the state store's last write failed, 0 once one succeeds",
            m.store_writes_failing.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                revision: revision.to_owned(),
            })
            .set(1);
        r.register(
            "botticelli_build_info",
            "Build of the running bot-server: always 1, with version and git revision",
            build,
        );
        r.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent",
            Unit::Seconds,
            m.process_cpu.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            m.process_rss.clone(),
        );
        r.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            m.process_vsize.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors",
            m.process_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "Maximum number of open file descriptors (the soft limit)",
            m.process_max_fds.clone(),
        );
        r.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            m.process_start.clone(),
        );
        Self { registry: r, ..m }
    }

    /// The text exposition of every metric, process figures read now.
    pub fn encode(&self) -> String {
        self.refresh_process();
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The same exposition in the classic Prometheus text format (0.0.4), for clients that do
    /// not ask for OpenMetrics (curl, `promtool check metrics`, older scrapers).
    pub fn encode_prometheus_text(&self) -> String {
        openmetrics_to_prometheus_text(&self.encode())
    }

    /// Records a finished run.
    /// A write of the state store failed (`ok` false) or succeeded after failures (`ok`
    /// true): see [`crate::store::WriteHealth::observe`].
    pub fn store_write(&self, ok: bool) {
        if ok {
            self.store_writes_failing.set(0);
        } else {
            self.store_write_failures.inc();
            self.store_writes_failing.set(1);
        }
    }

    pub fn run_finished(&self, actor: &str, outcome: &str, seconds: f64) {
        self.runs
            .get_or_create(&ActorOutcome {
                actor: actor.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.run_duration
            .get_or_create(&ActorLabels {
                actor: actor.to_owned(),
            })
            .observe(seconds);
    }

    /// Publishes an actor's state: failures, circuit, next and last-success times.
    pub fn actor_state(&self, state: &crate::actor_state::ActorState) {
        let labels = ActorLabels {
            actor: state.name.clone(),
        };
        self.consecutive_failures
            .get_or_create(&labels)
            .set(i64::from(state.consecutive_failures));
        for c in [
            crate::actor_state::Circuit::Closed,
            crate::actor_state::Circuit::Open,
            crate::actor_state::Circuit::HalfOpen,
        ] {
            let value = i64::from(c == state.circuit);
            self.circuit
                .get_or_create(&ActorState {
                    actor: state.name.clone(),
                    state: c.as_str().to_owned(),
                })
                .set(value);
        }
        match state.next_run_at {
            Some(t) => {
                self.next_run
                    .get_or_create(&labels)
                    .set(t.timestamp_millis() as f64 / 1000.0);
            }
            None => {
                self.next_run.remove(&labels);
            }
        }
        if let Some(t) = state.last_success_at {
            self.last_success
                .get_or_create(&labels)
                .set(t.timestamp_millis() as f64 / 1000.0);
        }
    }

    /// Records one LLM call's result.
    /// One retry of an LLM call (counted as it happens, so a call that finally fails counts
    /// its retries too).
    pub fn llm_retry(&self, provider: &str) {
        self.llm_retries
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
    }

    pub fn llm_call(&self, provider: &str, model: &str, outcome: &str) {
        self.llm_requests
            .get_or_create(&ModelOutcome {
                provider: provider.to_owned(),
                model: model.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records a successful act's duration.
    pub fn act_done(&self, narrative: &str, out: &crate::narrative::ActOutput) {
        self.act_duration
            .get_or_create(&ActLabels {
                narrative: narrative.to_owned(),
                act: out.act.clone(),
            })
            .observe(out.duration.as_secs_f64());
    }

    /// Records one finished LLM call (reported by [`crate::llm::LlmClients::observe_calls`]):
    /// its outcome and, when it succeeded, its duration, tokens and rate-limit wait.
    pub fn llm_call_done(&self, call: &crate::llm::LlmCall<'_>) {
        self.llm_call(call.provider, call.model, call.outcome);
        if call.outcome != "success" {
            return;
        }
        let model = ModelLabels {
            provider: call.provider.to_owned(),
            model: call.model.to_owned(),
        };
        self.llm_duration
            .get_or_create(&model)
            .observe(call.duration.as_secs_f64());
        self.llm_input_tokens
            .get_or_create(&model)
            .inc_by(call.input_tokens);
        self.llm_output_tokens
            .get_or_create(&model)
            .inc_by(call.output_tokens);
        if !call.rate_limit_wait.is_zero() {
            self.llm_rate_limit_wait
                .get_or_create(&ProviderLabels {
                    provider: call.provider.to_owned(),
                })
                .inc_by(call.rate_limit_wait.as_secs_f64());
        }
    }

    /// Records one Discord message attempt.
    pub fn discord_message(&self, outcome: &str) {
        self.discord_messages
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the queue gauges.
    pub fn queue(&self, counts: &[(crate::store::PostStatus, u64)]) {
        for (status, n) in counts {
            self.posts
                .get_or_create(&StatusLabels {
                    status: status.as_str().to_owned(),
                })
                .set(*n as i64);
        }
    }

    fn refresh_process(&self) {
        let Some(p) = ProcessStats::read() else {
            return;
        };
        // A counter only goes up: add the difference since the last scrape.
        let previous = self.process_cpu.get();
        if p.cpu_seconds > previous {
            self.process_cpu.inc_by(p.cpu_seconds - previous);
        }
        self.process_rss.set(p.rss_bytes as i64);
        self.process_vsize.set(p.virtual_memory_bytes as i64);
        self.process_fds.set(p.open_fds as i64);
        // Unlimited is exposed as the largest value, as Prometheus' own collectors do.
        self.process_max_fds.set(
            p.max_fds
                .map_or(i64::MAX, |max| max.min(i64::MAX as u64) as i64),
        );
        self.process_start.set(p.start_time_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_exposed() {
        let text = Metrics::new("abc").encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "no {name}: {text}");
        }
    }

    #[test]
    fn exposition_has_help_for_every_metric() {
        let m = Metrics::new("abc123");
        m.run_finished("a", "success", 0.5);
        let text = m.encode();
        assert!(
            text.contains("botticelli_actor_runs_total{actor=\"a\",outcome=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("botticelli_build_info{version=\""), "{text}");
        assert!(text.contains("revision=\"abc123\"} 1"), "{text}");
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}"
            );
        }
    }
}
