//! Loading a narrative file: its TOML format (`[narrative]`, `[toc]`, `[acts]`, `[vars]`), the
//! checks of the act order, and compiling the templates with the variables they need.

use super::{Act, Narrative, NarrativeError, OutputFormat};
use crate::tomlfile;
use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

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
                    // Built-in functions (`range`, `dict`, `namespace`...) are globals of the
                    // environment, not variables a run must supply.
                    if earlier.contains(&var) || env.globals().any(|(name, _)| name == var) {
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

    /// Refuses a `[vars]` value that holds one of `secrets`, naming the file and line.
    ///
    /// # Errors
    ///
    /// [`NarrativeError::SecretInVars`] for the first such value.
    pub fn refuse_secrets_in_vars(
        &self,
        secrets: &crate::secret::Known,
    ) -> Result<(), NarrativeError> {
        for (var, value) in &self.defaults {
            let Some(secret) = secrets.found_in(value) else {
                continue;
            };
            // The value as written is on the line that holds it (a value with escapes is not
            // found: the error then names the key only). Reading the file is a rare path.
            let line = std::fs::read_to_string(&self.path)
                .ok()
                .and_then(|text| {
                    let at = text.find(value.lines().next().unwrap_or_default())?;
                    Some(format!(":{}", tomlfile::line_of(&text, at)))
                })
                .unwrap_or_default();
            return Err(NarrativeError::SecretInVars {
                path: self.path.clone(),
                line,
                var: var.clone(),
                secret: secret.to_owned(),
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

    /// minijinja's built-in functions (`range`, `dict`, `namespace`) are not variables to
    /// supply: a narrative using them loads, needs nothing, and renders.
    #[test]
    fn builtin_functions_are_not_missing_variables() {
        let n = parse(
            "[narrative]\nname = \"r\"\n[acts]\nonly = \"{% for i in range(3) %}{{ i }}{% endfor %} {{ dict(a=1).a }} {% set ns = namespace(n=2) %}{{ ns.n }} {{ topic }}\"\n",
        )
        .unwrap();
        assert_eq!(n.variables, BTreeSet::from(["topic".to_owned()]));
        n.check_variables(&BTreeMap::from([("topic".into(), "x".into())]), &[])
            .unwrap();
    }
}
