//! Botticelli's bot-server: runs scheduled, TOML-defined LLM workflows ("narratives") and
//! delivers their results to Discord, keeping its state so that a restart or a crash loses
//! nothing and repeats nothing.
//!
//! # Layout
//!
//! - [`config`]: the server config (`actor_server.toml`): types, defaults, validation.
//! - [`limits`]: the range of every numeric config key.
//! - [`duration`]: durations in the config, in seconds or with a unit (`"15m"`).
//! - [`tomlfile`]: reading TOML with `${VAR}` interpolation and errors naming file, key, line.
//! - [`narrative`]: narrative files, their acts and templates, checked at load time; running them.
//! - [`llm`]: LLM providers (Gemini, OpenAI-compatible, Anthropic, offline), retries and rate
//!   limits shared by the whole process.
//! - [`discord`]: delivery to targets (Discord channel, webhook, log), pacing from Discord's
//!   rate-limit headers (`discord::ratelimit`), message splitting.
//! - [`store`]: the state store (SQLite in the state directory): actors, runs, the post queue,
//!   and how its writes are going (for `/readyz`).
//! - [`actor_state`]: what is kept about an actor between runs, and the circuit breaker's rules.
//! - [`claims`]: one sender per post in flight.
//! - [`outbox`]: posts on their way: the loop that re-sends unfinished posts at start-up and
//!   with backoff.
//! - [`schedule`]: schedule kinds and their fire times.
//! - [`scheduler`]: the loop that fires due actors, the circuit breaker, shutdown.
//! - [`shutdown`]: the shutdown budget: how long a stop may take, and what each part of it gets.
//! - [`runner`]: one actor run: narrative, queue actions, delivery.
//! - [`app`]: the assembled server shared by the scheduler and runs.
//! - [`server`]: what `serve` runs: admin server, scheduler, orderly stop (used by the binary
//!   and the integration tests).
//! - [`metrics`]: the Prometheus metrics of the process.
//! - [`admin`]: the admin HTTP server: `/metrics`, `/healthz`, `/readyz`.
//! - [`telemetry`]: logs (stderr, `RUST_LOG`, `LOG_FORMAT`) and OpenTelemetry traces (OTLP export).
//! - [`commands`]: the CLI subcommands as library functions.
//! - [`clock`]: the system's wall-clock time, which moves with tokio's clock when a test pauses it.
//! - [`secret`]: a string type that never prints its value; reading secrets from the environment
//!   (`NAME` or `NAME_FILE`); the values a process knows, kept out of templates.
//! - `fakes` (feature `fakes`, on for tests, examples and benchmarks only): in-process fakes of
//!   Gemini, OpenAI, Anthropic, Discord and an OTLP trace receiver, speaking their wire
//!   formats; not in the shipped binary.

pub mod actor_state;
pub mod admin;
pub mod app;
pub mod claims;
pub mod clock;
pub mod commands;
pub mod config;
pub mod discord;
pub mod duration;
#[cfg(feature = "fakes")]
pub mod fakes;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod narrative;
pub mod outbox;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tomlfile;

/// `err` and its sources, joined by `: ` (what anyhow's `{:#}` prints), for places that
/// store or log an error without anyhow. A cause whose text the chain already holds is not
/// repeated (reqwest's "error sending request" says little; its cause says "connection
/// refused", and some errors quote their cause).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The first `max` characters of `text`, quoted on one line (newlines and quotes escaped, as
/// `{:?}` prints them) and marked with the count of what was cut: the one form in which an
/// answer or a response body is quoted in errors and logs.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!(
            "{:?}… ({} more characters)",
            &text[..cut],
            text[cut..].chars().count()
        ),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_never_cuts_inside_a_character() {
        let e = excerpt(&"é".repeat(10), 3);
        assert_eq!(e, "\"ééé\"… (7 more characters)");
        assert_eq!(excerpt("  short\n", 3), "\"sho\"… (2 more characters)");
        assert_eq!(excerpt(" two\nlines ", 300), "\"two\\nlines\"");
    }
}
