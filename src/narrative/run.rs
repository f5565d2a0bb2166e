//! Running a loaded narrative: resolving each act's provider and model, rendering its
//! templates, calling the model and checking JSON output, act after act.

use super::json::extract_json;
use super::{Act, ActOutput, Narrative, NarrativeError, OutputFormat, RunOptions};
use crate::excerpt;
use crate::llm::{LlmClients, LlmRequest};
use minijinja::Value;
use std::collections::BTreeMap;
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

impl Narrative {
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
            // The client makes its own `chat {model}` span, a child of this act's.
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
