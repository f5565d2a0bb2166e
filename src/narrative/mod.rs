//! Narratives: TOML files describing a multi-step LLM workflow, and running them.
//!
//! A narrative's acts run in `[toc] order`; each act's prompt is a minijinja template that sees
//! the outputs of earlier acts (`{{ draft }}`) and the run's variables (`{{ topic }}`). All
//! templates are compiled when the file is loaded, and a reference to an act that does not
//! exist yet at that point is an error then, not a literal string sent to a model.

mod json;
mod load;
mod run;

use crate::llm::LlmError;
use crate::tomlfile::TomlFileError;
use minijinja::{Environment, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::json::extract_json;

/// Variables a narrative receives from the server itself rather than from the user.
pub const BUILTIN_VARS: &[&str] = &["pending_posts", "actor", "now"];

/// What an act's output is.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    /// JSON, extracted from a fenced block or a bare array/object, and validated.
    Json,
}

/// One act, validated.
#[derive(Debug, Clone)]
pub struct Act {
    pub name: String,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub has_system: bool,
    pub output: OutputFormat,
}

/// A loaded narrative.
#[derive(Debug, Clone)]
pub struct Narrative {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// Acts in run order.
    pub acts: Vec<Act>,
    /// Default values of variables (`[vars]`).
    pub defaults: BTreeMap<String, String>,
    /// Variables the templates use that are not acts (must be supplied to run).
    pub variables: BTreeSet<String>,
    env: Arc<Environment<'static>>,
}

/// A narrative that cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum NarrativeError {
    #[error(transparent)]
    File(#[from] TomlFileError),
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "narrative `{narrative}`: act `{act}` uses `{{{{ {var} }}}}`, which is neither an earlier act nor a given variable; pass it (`--var {var}=...` or the actor's `vars`) or add it to the narrative's [vars]"
    )]
    MissingVariable {
        narrative: String,
        act: String,
        var: String,
    },
    #[error("narrative `{narrative}`: act `{act}`: template failed: {message}")]
    Render {
        narrative: String,
        act: String,
        message: String,
    },
    #[error("narrative `{narrative}`: act `{act}`")]
    Llm {
        narrative: String,
        act: String,
        provider: String,
        model: String,
        #[source]
        source: Box<LlmError>,
    },
    #[error(
        "narrative `{narrative}`: act `{act}` asked for JSON output but the model's answer is not valid JSON ({reason}); the answer was: {excerpt}"
    )]
    InvalidJson {
        narrative: String,
        act: String,
        reason: String,
        excerpt: String,
    },
    #[error("narrative `{narrative}`: stopped before act `{act}` (shutting down)")]
    Cancelled { narrative: String, act: String },
    #[error(
        "{path}{line}: `vars.{var}` holds the value of {secret}, a secret: a narrative's variables go into its prompts, which are sent to the model and can end up in a post; remove it"
    )]
    SecretInVars {
        path: PathBuf,
        /// `:LINE`, or empty when the value is not found as written in the file.
        line: String,
        var: String,
        /// Which secret: its variable's name, or the config key holding it.
        secret: String,
    },
}

/// The result of one act.
#[derive(Debug, Clone)]
pub struct ActOutput {
    pub act: String,
    pub text: String,
    pub json: Option<serde_json::Value>,
    pub provider: String,
    /// The model asked for (a bounded name from the files, used as a metric label).
    pub request_model: String,
    /// The model that answered, as the provider reports it.
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub retries: u32,
    pub rate_limit_wait: Duration,
    pub duration: Duration,
}

/// How to run a narrative.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// User variables (actor `vars`, `--var`), over the narrative's `[vars]`.
    pub vars: BTreeMap<String, String>,
    /// Server-provided values (e.g. `pending_posts`).
    pub builtins: BTreeMap<String, Value>,
    /// `--provider` / `--model`: win over everything in the file.
    pub provider_override: Option<String>,
    pub model_override: Option<String>,
    /// Provider when neither act nor narrative names one.
    pub default_provider: String,
}
