//! Narratives: TOML files describing a multi-step LLM workflow, and running them.
//!
//! A narrative's acts run in `[toc] order`; each act's prompt is a minijinja template that sees
//! the outputs of earlier acts (`{{ draft }}`) and the run's variables (`{{ topic }}`). All
//! templates are compiled when the file is loaded, and a reference to an act that does not
//! exist yet at that point is an error then, not a literal string sent to a model.

use crate::llm::{LlmClients, LlmError, LlmRequest};
use crate::tomlfile::{self, TomlFileError};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// Marks a span as failed, the OpenTelemetry way (status and message).
trait RecordError {
    fn record_error(&self, message: &str);
}

impl RecordError for tracing::Span {
    fn record_error(&self, message: &str) {
        self.record("otel.status_code", "ERROR");
        self.record("error.message", message);
    }
}

/// Variables a narrative receives from the server itself rather than from the user.
pub const BUILTIN_VARS: &[&str] = &["pending_posts", "actor", "now"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NarrativeFile {
    narrative: Header,
    #[serde(default)]
    toc: Option<Toc>,
    acts: BTreeMap<String, ActSpec>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    system: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Toc {
    order: Vec<String>,
}

/// An act as written: a bare prompt string or a table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActTable {
    prompt: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    output: OutputFormat,
}

#[derive(Debug)]
struct ActSpec(ActTable);

impl<'de> Deserialize<'de> for ActSpec {
    // Hand-written instead of `#[serde(untagged)]`, whose error ("did not match any variant")
    // would hide which key of the table was wrong.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ActSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a prompt string or a table with `prompt`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ActSpec, E> {
                Ok(ActSpec(ActTable {
                    prompt: v.to_owned(),
                    model: None,
                    provider: None,
                    temperature: None,
                    max_tokens: None,
                    system: None,
                    output: OutputFormat::Text,
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<ActSpec, A::Error> {
                ActTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ActSpec)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

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

impl Narrative {
    /// Loads and checks a narrative file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or parsed, `[toc] order` names an act that does not exist,
    /// an act is not in the order, or a template is invalid or refers to a later act.
    pub fn load(path: &Path) -> Result<Self, NarrativeError> {
        // Never the environment: a narrative's text is sent to a model.
        let file: NarrativeFile = tomlfile::load_literal(path)?;
        Self::from_file(path, file)
    }

    /// Parses narrative text as if read from `path` (for tests and tools).
    ///
    /// # Errors
    ///
    /// See [`Narrative::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Self, NarrativeError> {
        let file: NarrativeFile = tomlfile::parse_literal(path, text)?;
        Self::from_file(path, file)
    }

    fn from_file(path: &Path, file: NarrativeFile) -> Result<Self, NarrativeError> {
        let invalid = |key: String, message: String| NarrativeError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        let NarrativeFile {
            narrative: header,
            toc,
            mut acts,
            vars,
        } = file;
        if acts.is_empty() {
            return Err(invalid(
                "acts".into(),
                "a narrative needs at least one act".into(),
            ));
        }
        let order = match toc {
            Some(toc) => toc.order,
            None if acts.len() == 1 => acts.keys().cloned().collect(),
            None => {
                return Err(invalid(
                    "toc.order".into(),
                    "missing: with more than one act, list them in run order".into(),
                ));
            }
        };
        if order.is_empty() {
            return Err(invalid("toc.order".into(), "is empty".into()));
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let known_acts: BTreeSet<String> = acts.keys().cloned().collect();
        let mut earlier: BTreeSet<String> = BTreeSet::new();
        let mut variables = BTreeSet::new();
        let mut out_acts = Vec::with_capacity(order.len());
        let mut compiled = Vec::new();
        for (i, name) in order.iter().enumerate() {
            let Some(ActSpec(spec)) = acts.remove(name) else {
                let message = if earlier.contains(name) {
                    format!("act `{name}` is listed twice")
                } else {
                    format!(
                        "names act `{name}`, which has no [acts] entry (acts: {})",
                        known_acts.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(invalid(format!("toc.order[{i}]"), message));
            };
            let mut sources = vec![("prompt", spec.prompt.clone())];
            if let Some(system) = spec.system.clone().or_else(|| header.system.clone()) {
                sources.push(("system", system));
            }
            for (part, source) in sources {
                let template_name = format!("{name}.{part}");
                let key = if part == "system" && spec.system.is_none() {
                    "narrative.system".to_owned()
                } else {
                    format!("acts.{name}.{part}")
                };
                compiled.push((template_name.clone(), source.clone(), key.clone()));
                let tmpl = env
                    .template_from_named_str(&template_name, &source)
                    .map_err(|e| invalid(key.clone(), format!("invalid template: {e}")))?;
                for var in tmpl.undeclared_variables(false) {
                    if earlier.contains(&var) {
                        continue;
                    }
                    if var == *name {
                        return Err(invalid(
                            key.clone(),
                            format!("act `{name}` refers to its own output `{{{{ {var} }}}}`"),
                        ));
                    }
                    if known_acts.contains(&var) {
                        return Err(invalid(
                            key.clone(),
                            format!(
                                "refers to act `{var}`, which runs later (order: {}); an act can only use earlier acts",
                                order.join(", ")
                            ),
                        ));
                    }
                    variables.insert(var);
                }
            }
            earlier.insert(name.clone());
            out_acts.push(Act {
                name: name.clone(),
                model: spec.model,
                provider: spec.provider,
                temperature: spec.temperature.or(header.temperature),
                max_tokens: spec.max_tokens.or(header.max_tokens),
                has_system: spec.system.is_some() || header.system.is_some(),
                output: spec.output,
            });
        }
        if let Some(unused) = acts.keys().next() {
            return Err(invalid(
                format!("acts.{unused}"),
                format!("act `{unused}` is not in [toc] order; add it there or remove it"),
            ));
        }
        for (template_name, source, key) in compiled {
            env.add_template_owned(template_name, source)
                .map_err(|e| invalid(key, format!("invalid template: {e}")))?;
        }
        Ok(Self {
            path: path.to_owned(),
            name: header.name,
            description: header.description,
            model: header.model,
            provider: header.provider,
            acts: out_acts,
            defaults: vars,
            variables,
            env: Arc::new(env),
        })
    }

    /// Checks that every variable the templates use is supplied by `vars`, `[vars]` or the
    /// server (`builtins`).
    ///
    /// # Errors
    ///
    /// [`NarrativeError::MissingVariable`] naming the first missing one and the act using it.
    pub fn check_variables(
        &self,
        vars: &BTreeMap<String, String>,
        builtins: &[&str],
    ) -> Result<(), NarrativeError> {
        for var in &self.variables {
            if vars.contains_key(var)
                || self.defaults.contains_key(var)
                || builtins.contains(&var.as_str())
            {
                continue;
            }
            let act = self.act_using(var).unwrap_or_default();
            return Err(NarrativeError::MissingVariable {
                narrative: self.name.clone(),
                act,
                var: var.clone(),
            });
        }
        Ok(())
    }

    fn act_using(&self, var: &str) -> Option<String> {
        self.acts.iter().find_map(|act| {
            let uses = ["prompt", "system"].iter().any(|part| {
                self.env
                    .get_template(&format!("{}.{part}", act.name))
                    .is_ok_and(|t| t.undeclared_variables(false).contains(var))
            });
            uses.then(|| act.name.clone())
        })
    }

    /// Which provider and model an act uses under `options`; the model is empty when
    /// neither the files nor the provider's `default_model` name one.
    pub fn resolve(&self, act: &Act, options: &RunOptions, llm: &LlmClients) -> (String, String) {
        let provider = options
            .provider_override
            .clone()
            .or_else(|| act.provider.clone())
            .or_else(|| self.provider.clone())
            .unwrap_or_else(|| options.default_provider.clone());
        let model = options
            .model_override
            .clone()
            .or_else(|| act.model.clone())
            .or_else(|| self.model.clone())
            .or_else(|| llm.default_model(&provider))
            .unwrap_or_default();
        (provider, model)
    }

    /// Runs every act in order. `on_act` sees each act's output as soon as it is done.
    /// `cancel` is checked between acts: a cancelled run stops before its next act.
    ///
    /// # Errors
    ///
    /// The first act that fails (missing variable, template error, LLM error, invalid JSON).
    pub async fn run(
        &self,
        llm: &LlmClients,
        options: &RunOptions,
        cancel: &tokio_util::sync::CancellationToken,
        mut on_act: impl FnMut(&ActOutput),
    ) -> Result<Vec<ActOutput>, NarrativeError> {
        let builtin_names: Vec<&str> = options.builtins.keys().map(String::as_str).collect();
        self.check_variables(&options.vars, &builtin_names)?;
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in self.defaults.iter().chain(options.vars.iter()) {
            context.insert(k.clone(), Value::from(v.clone()));
        }
        for (k, v) in &options.builtins {
            context.insert(k.clone(), v.clone());
        }
        let mut outputs = Vec::with_capacity(self.acts.len());
        for act in &self.acts {
            if cancel.is_cancelled() {
                return Err(NarrativeError::Cancelled {
                    narrative: self.name.clone(),
                    act: act.name.clone(),
                });
            }
            let render = |part: &str| -> Result<String, NarrativeError> {
                let t = self
                    .env
                    .get_template(&format!("{}.{part}", act.name))
                    .map_err(|e| NarrativeError::Render {
                        narrative: self.name.clone(),
                        act: act.name.clone(),
                        message: e.to_string(),
                    })?;
                t.render(&context).map_err(|e| NarrativeError::Render {
                    narrative: self.name.clone(),
                    act: act.name.clone(),
                    message: format!("{e:#}"),
                })
            };
            let prompt = render("prompt")?;
            let system = if act.has_system {
                Some(render("system")?)
            } else {
                None
            };
            let (provider, model) = self.resolve(act, options, llm);
            let act_span = tracing::info_span!(
                "narrative.act",
                narrative = %self.name,
                act = %act.name,
                otel.status_code = tracing::field::Empty,
                error.message = tracing::field::Empty,
            );
            let request = LlmRequest {
                model: model.clone(),
                system,
                prompt,
                temperature: act.temperature,
                max_tokens: act.max_tokens,
                json: act.output == OutputFormat::Json,
            };
            let started = Instant::now();
            let call = async {
                tokio::select! {
                    r = llm.complete(&provider, &request) => Some(r),
                    () = cancel.cancelled() => None,
                }
            };
            // The client makes its own `llm.chat` span, a child of this act's.
            let Some(response) = call.instrument(act_span.clone()).await else {
                return Err(NarrativeError::Cancelled {
                    narrative: self.name.clone(),
                    act: act.name.clone(),
                });
            };
            let response = match response {
                Ok(r) => r,
                Err(source) => {
                    act_span.record_error(&source.to_string());
                    return Err(NarrativeError::Llm {
                        narrative: self.name.clone(),
                        act: act.name.clone(),
                        provider,
                        model,
                        source: Box::new(source),
                    });
                }
            };
            let json = match act.output {
                OutputFormat::Text => None,
                OutputFormat::Json => match extract_json(&response.text) {
                    Ok(j) => Some(j),
                    Err(reason) => {
                        let err = NarrativeError::InvalidJson {
                            narrative: self.name.clone(),
                            act: act.name.clone(),
                            reason,
                            excerpt: excerpt(&response.text, 500),
                        };
                        act_span.record_error(&err.to_string());
                        return Err(err);
                    }
                },
            };
            let value = match &json {
                Some(j) => Value::from_serialize(j),
                None => Value::from(response.text.clone()),
            };
            context.insert(act.name.clone(), value);
            let output = ActOutput {
                act: act.name.clone(),
                text: response.text,
                json,
                provider,
                request_model: model,
                model: response.model,
                input_tokens: response.input_tokens,
                output_tokens: response.output_tokens,
                retries: response.retries,
                rate_limit_wait: response.rate_limit_wait,
                duration: started.elapsed(),
            };
            on_act(&output);
            outputs.push(output);
        }
        Ok(outputs)
    }
}

/// The first `max` characters of `text`, marked when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!(
            "{:?}… ({} more characters)",
            &text[..cut],
            text[cut..].chars().count()
        ),
        None => format!("{text:?}"),
    }
}

/// Extracts JSON from a model's answer: a fenced ```json block, or the outermost array or
/// object in the text.
///
/// # Errors
///
/// A description of why nothing in the text parses as JSON.
pub fn extract_json(text: &str) -> Result<serde_json::Value, String> {
    let mut candidates = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        candidates.push(after[body_start..body_start + end].trim());
        rest = &after[body_start + end + 3..];
    }
    for (open, close) in [('[', ']'), ('{', '}')] {
        if let (Some(s), Some(e)) = (text.find(open), text.rfind(close))
            && s < e
        {
            candidates.push(&text[s..=e]);
        }
    }
    let mut first_error = None;
    for candidate in candidates {
        match serde_json::from_str::<serde_json::Value>(candidate) {
            Ok(value) => return Ok(value),
            Err(e) => {
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "no JSON array or object found".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Narrative, NarrativeError> {
        Narrative::parse(Path::new("n.toml"), text)
    }

    const DAILY_TIP: &str = r#"
[narrative]
name = "daily_tip"
description = "One practical Rust tip a day"
model = "gemini-2.5-flash"
[toc]
order = ["draft", "critique", "final"]
[acts]
draft = "Write three short tips about {{ topic }}."
critique = "Critique these tips for accuracy: {{ draft }}"
[acts.final]
prompt = "Rewrite the best tip as one Discord post under 300 characters: {{ critique }}"
model = "gemini-2.5-flash-lite"
temperature = 0.3
max_tokens = 400
"#;

    #[test]
    fn background_example_loads() {
        let n = parse(DAILY_TIP).unwrap();
        assert_eq!(
            n.acts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["draft", "critique", "final"]
        );
        assert_eq!(n.variables, BTreeSet::from(["topic".to_owned()]));
        assert_eq!(n.acts[2].max_tokens, Some(400));
    }

    #[test]
    fn later_act_reference_is_an_error() {
        let e = parse(&DAILY_TIP.replace("{{ topic }}", "{{ critique }}"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "n.toml: `acts.draft.prompt`: refers to act `critique`, which runs later (order: draft, critique, final); an act can only use earlier acts"
        );
    }

    #[test]
    fn toc_naming_missing_act_is_an_error() {
        let e = parse(&DAILY_TIP.replace("\"final\"]", "\"finale\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("n.toml: `toc.order[2]`: names act `finale`, which has no [acts] entry"),
            "{e}"
        );
    }

    #[test]
    fn unknown_act_key_is_an_error_with_line() {
        let e = parse(&DAILY_TIP.replace("temperature = 0.3", "temprature = 0.3"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("n.toml:14: `acts.final.temprature`: unknown field `temprature`"),
            "{e}"
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let n = parse(DAILY_TIP).unwrap();
        let e = n
            .check_variables(&BTreeMap::new(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("act `draft` uses `{{ topic }}`"), "{e}");
        n.check_variables(&BTreeMap::from([("topic".into(), "rust".into())]), &[])
            .unwrap();
    }

    #[test]
    fn json_is_extracted_from_fences_and_prose() {
        assert_eq!(
            extract_json("Sure!\n```json\n[1, 2]\n```\nDone").unwrap(),
            serde_json::json!([1, 2])
        );
        assert_eq!(
            extract_json("Here: [\"a\", \"b\"] ok").unwrap(),
            serde_json::json!(["a", "b"])
        );
        assert_eq!(
            extract_json("{\"a\": 1}").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert!(extract_json("no json here").is_err());
        assert!(extract_json("[1, 2").is_err());
    }

    #[test]
    fn excerpt_never_cuts_inside_a_character() {
        let e = excerpt(&"é".repeat(10), 3);
        assert!(e.starts_with("\"ééé\"…"), "{e}");
    }
}
