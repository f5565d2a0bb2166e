//! Integration tests: one crate, one module per area.
mod cli;
mod fake_discord;
mod llm;
mod pipeline;
mod support;
