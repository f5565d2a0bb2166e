//! Integration tests: one crate, one module per area.
mod admin;
mod cli;
mod config_ranges;
mod fake_discord;
mod faults;
mod llm;
mod pipeline;
mod shutdown;
mod store_faults;
mod support;
mod tls;
mod traces;
