//! Botticelli's bot-server: runs scheduled, TOML-defined LLM workflows ("narratives") and
//! delivers their results to Discord, keeping its state so that a restart or a crash loses
//! nothing and repeats nothing.
//!
//! # Layout
//!
//! - [`config`]: the server config (`actor_server.toml`): loading, `${VAR}` interpolation,
//!   validation, errors that name the file, key and line.
//! - [`narrative`]: narrative files, their acts and templates, checked at load time.
//! - [`llm`]: LLM providers (Gemini, OpenAI-compatible, Anthropic, offline), retries and rate
//!   limits shared by the whole process.
//! - [`discord`]: delivery targets (Discord bot channel, webhook, log) and message splitting.
//! - [`store`]: the state store (SQLite in the state directory): actors, runs, the post queue.
//! - [`schedule`]: schedule kinds and their next fire times.
//! - [`scheduler`]: the loop that fires due actors, the circuit breaker, shutdown.
//! - [`runner`]: one actor run: narrative, queue actions, delivery.
//! - [`clock`]: wall-clock time derived from tokio's clock, so tests can pause it.
//! - [`secret`]: a string type that never prints its value.
//! - [`fakes`]: in-process fakes of Gemini, OpenAI, Anthropic and Discord, speaking their wire
//!   formats; used by the tests and the benchmarks.

pub mod secret;
pub mod llm;
pub mod fakes;
