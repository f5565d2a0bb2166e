//! The telemetry settings: the `OTEL_*`, `RUST_LOG` and `LOG_FORMAT` variables read and
//! validated into a [`TelemetryConfig`] (exporter kind, OTLP protocol and endpoint, sampler,
//! CA file, headers file, log format and filter), and the [`SettingsError`] naming a variable
//! with a bad value.
//! The variables and their defaults are listed in the parent module's docs.

use tracing_subscriber::EnvFilter;

use super::headers::{self, HeadersError, OtlpHeaders};
use super::sampler::SamplerConfig;

/// `service.name` when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "bot-server";

/// Where spans go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExporterKind {
    /// OTLP to a collector (Jaeger, the OTel collector, …).
    Otlp,
    /// Printed to stdout by `opentelemetry-stdout` (for debugging; mixes with command output).
    Stdout,
    /// Nowhere: spans still get trace ids (for the logs) but are dropped.
    None,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// The CA file trusted for the collector, and the variable that named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFile {
    /// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    pub var: &'static str,
    pub path: std::path::PathBuf,
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// tracing-subscriber's default human-readable lines.
    Human,
    /// One JSON object per line, with the current span and the span list.
    Json,
}

/// Telemetry settings, read from the environment by [`TelemetryConfig::from_env`].
#[derive(Clone, Debug, PartialEq)]
pub struct TelemetryConfig {
    pub exporter: ExporterKind,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    /// Which traces are sampled.
    pub sampler: SamplerConfig,
    /// A PEM file of CA certificates trusted for an `https://` collector, besides the OS
    /// trust store.
    pub ca_file: Option<CaFile>,
    /// The headers of `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE` or
    /// `OTEL_EXPORTER_OTLP_HEADERS_FILE`, read only for the OTLP exporter (the plain variables
    /// are read by `opentelemetry-otlp` itself).
    pub otlp_headers: Option<OtlpHeaders>,
    pub log_format: LogFormat,
    /// The `EnvFilter` directives for the logs.
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            exporter: ExporterKind::None,
            protocol: OtlpProtocol::Grpc,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            sampler: SamplerConfig::ParentBasedAlwaysOn,
            ca_file: None,
            otlp_headers: None,
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
        }
    }
}

/// An environment variable with a value that is not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid: expected {expected}")]
pub struct EnvError {
    /// The variable's name.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// What is allowed.
    pub expected: String,
}

/// Telemetry variables that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A variable with a value that is not allowed (shown: these are not secrets).
    #[error(transparent)]
    Invalid(#[from] EnvError),
    /// The headers variables (no value shown: they are secrets).
    #[error(transparent)]
    Headers(#[from] HeadersError),
}

impl SettingsError {
    /// The variable with the bad value (the first one named, for the headers).
    pub fn var(&self) -> &str {
        match self {
            Self::Invalid(err) => err.var,
            Self::Headers(HeadersError::Env(
                crate::secret::EnvValueError::BothSet { name }
                | crate::secret::EnvValueError::Unreadable { name, .. },
            )) => name,
            Self::Headers(HeadersError::Malformed { var, .. }) => var,
            Self::Headers(HeadersError::TracesFileWithPlainHeaders) => {
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE"
            }
        }
    }
}

impl TelemetryConfig {
    /// Reads the process environment (see the module docs for the variables).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (the environment, or a map in tests). Unset and empty
    /// variables take their defaults; values are trimmed and compared case-insensitively.
    /// The headers file is read only for the OTLP exporter.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = Self::from_values(&get)?;
        if config.exporter == ExporterKind::Otlp {
            config.otlp_headers = headers::from_lookup(get)?;
        }
        Ok(config)
    }

    /// Everything but the headers, from the trimmed, non-empty values `get` gives.
    fn from_values(get: &impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let mut config = Self::default();

        let exporter = |var: &'static str| -> Result<Option<ExporterKind>, EnvError> {
            let Some(value) = get(var) else {
                return Ok(None);
            };
            match value.to_ascii_lowercase().as_str() {
                "otlp" => Ok(Some(ExporterKind::Otlp)),
                "stdout" | "console" => Ok(Some(ExporterKind::Stdout)),
                "none" => Ok(Some(ExporterKind::None)),
                _ => Err(EnvError {
                    var,
                    value,
                    expected: "one of `otlp`, `stdout`, `none`".into(),
                }),
            }
        };
        // The standard variable first; `OTEL_EXPORTER` is an alias, and a contradiction is an
        // error rather than a silent choice.
        match (
            exporter("OTEL_TRACES_EXPORTER")?,
            exporter("OTEL_EXPORTER")?,
        ) {
            (Some(standard), Some(alias)) if standard != alias => {
                return Err(EnvError {
                    var: "OTEL_EXPORTER",
                    value: get("OTEL_EXPORTER").unwrap_or_default(),
                    expected: format!(
                        "the same exporter as OTEL_TRACES_EXPORTER={:?} (OTEL_EXPORTER is its \
                         alias: set one of them)",
                        get("OTEL_TRACES_EXPORTER").unwrap_or_default()
                    ),
                });
            }
            (Some(kind), _) | (None, Some(kind)) => config.exporter = kind,
            (None, None) => {}
        }

        if let Some(value) = get("OTEL_SDK_DISABLED") {
            match value.to_ascii_lowercase().as_str() {
                "true" => config.exporter = ExporterKind::None,
                "false" => {}
                _ => {
                    return Err(EnvError {
                        var: "OTEL_SDK_DISABLED",
                        value,
                        expected: "`true` or `false`".into(),
                    });
                }
            }
        }

        if let Some(value) = get("OTEL_EXPORTER_OTLP_PROTOCOL") {
            config.protocol = match value.to_ascii_lowercase().as_str() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                _ => {
                    return Err(EnvError {
                        var: "OTEL_EXPORTER_OTLP_PROTOCOL",
                        value,
                        expected: "one of `grpc`, `http/protobuf`".into(),
                    });
                }
            };
        }

        if let Some(value) = get("OTEL_SERVICE_NAME") {
            config.service_name = value;
        }

        let ratio = || -> Result<f64, EnvError> {
            let Some(value) = get("OTEL_TRACES_SAMPLER_ARG") else {
                return Ok(1.0);
            };
            match value.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(EnvError {
                    var: "OTEL_TRACES_SAMPLER_ARG",
                    value,
                    expected: "a sampling ratio from 0 to 1, such as `0.25`".into(),
                }),
            }
        };
        config.sampler = match get("OTEL_TRACES_SAMPLER") {
            // Only the ratio: a parent-based ratio sampler, as before the sampler was settable.
            None if get("OTEL_TRACES_SAMPLER_ARG").is_some() => {
                SamplerConfig::ParentBasedTraceIdRatio(ratio()?)
            }
            None => SamplerConfig::ParentBasedAlwaysOn,
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "always_on" => SamplerConfig::AlwaysOn,
                "always_off" => SamplerConfig::AlwaysOff,
                "traceidratio" => SamplerConfig::TraceIdRatio(ratio()?),
                "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
                "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
                "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
                _ => {
                    return Err(EnvError {
                        var: "OTEL_TRACES_SAMPLER",
                        value,
                        expected: "one of `always_on`, `always_off`, `traceidratio`, \
                                   `parentbased_always_on`, `parentbased_always_off`, \
                                   `parentbased_traceidratio`"
                            .into(),
                    });
                }
            },
        };

        config.ca_file = [
            "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ]
        .into_iter()
        .find_map(|var| {
            get(var).map(|path| CaFile {
                var,
                path: path.into(),
            })
        });

        if get("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json")) {
            config.log_format = LogFormat::Json;
        }

        if let Some(value) = get("RUST_LOG") {
            if let Err(err) = EnvFilter::builder().parse(&value) {
                return Err(EnvError {
                    var: "RUST_LOG",
                    value,
                    expected: format!("a tracing filter such as `info,bot_server=debug` ({err})"),
                });
            }
            config.log_filter = value;
        }
        Ok(config)
    }

    /// Where OTLP spans are sent, as the exporter will resolve it (for the startup log line).
    pub fn otlp_endpoint(&self, get: impl Fn(&str) -> Option<String>) -> String {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            return url;
        }
        match self.protocol {
            OtlpProtocol::Grpc => {
                get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| "http://localhost:4317".into())
            }
            OtlpProtocol::HttpProtobuf => format!(
                "{}/v1/traces",
                get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    .as_deref()
                    .unwrap_or("http://localhost:4318")
                    .trim_end_matches('/')
            ),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::telemetry::tracer_provider;
    use std::collections::HashMap;

    /// The config for these variables (also used by the sibling modules' tests).
    pub(in crate::telemetry) fn parse(
        vars: &[(&str, &str)],
    ) -> Result<TelemetryConfig, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TelemetryConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        assert_eq!(parse(&[]).unwrap(), TelemetryConfig::default());
        let c = TelemetryConfig::default();
        assert_eq!(c.exporter, ExporterKind::None);
        assert_eq!(c.protocol, OtlpProtocol::Grpc);
        assert_eq!(c.service_name, "bot-server");
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.ca_file, None);
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn exporter_kinds() {
        for var in ["OTEL_TRACES_EXPORTER", "OTEL_EXPORTER"] {
            for (value, kind) in [
                ("otlp", ExporterKind::Otlp),
                ("OTLP", ExporterKind::Otlp),
                (" stdout ", ExporterKind::Stdout),
                ("console", ExporterKind::Stdout),
                ("none", ExporterKind::None),
                ("", ExporterKind::None),
            ] {
                assert_eq!(
                    parse(&[(var, value)]).unwrap().exporter,
                    kind,
                    "{var}={value}"
                );
            }
        }
        // Both set: they must agree (case and spaces aside).
        let c = parse(&[("OTEL_TRACES_EXPORTER", "otlp"), ("OTEL_EXPORTER", " OTLP")]).unwrap();
        assert_eq!(c.exporter, ExporterKind::Otlp);
        let c = parse(&[
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_EXPORTER", "stdout"),
        ])
        .unwrap();
        assert_eq!(c.exporter, ExporterKind::Stdout);
        // An empty alias is unset.
        let c = parse(&[("OTEL_TRACES_EXPORTER", "otlp"), ("OTEL_EXPORTER", "")]).unwrap();
        assert_eq!(c.exporter, ExporterKind::Otlp);
    }

    #[test]
    fn contradicting_exporter_variables_are_an_error() {
        let err =
            parse(&[("OTEL_TRACES_EXPORTER", "otlp"), ("OTEL_EXPORTER", "none")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER=\"none\" is not valid: expected the same exporter as \
             OTEL_TRACES_EXPORTER=\"otlp\" (OTEL_EXPORTER is its alias: set one of them)"
        );
    }

    #[test]
    fn sdk_disabled_builds_no_exporter() {
        for value in ["true", "TRUE", " True "] {
            let c = parse(&[
                ("OTEL_SDK_DISABLED", value),
                ("OTEL_TRACES_EXPORTER", "otlp"),
            ])
            .unwrap();
            assert_eq!(c.exporter, ExporterKind::None, "{value}");
        }
        for value in ["false", "FALSE", ""] {
            let c = parse(&[
                ("OTEL_SDK_DISABLED", value),
                ("OTEL_TRACES_EXPORTER", "otlp"),
            ])
            .unwrap();
            assert_eq!(c.exporter, ExporterKind::Otlp, "{value}");
        }
        let err = parse(&[("OTEL_SDK_DISABLED", "yes")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_SDK_DISABLED=\"yes\" is not valid: expected `true` or `false`"
        );
        // Disabled with an exporter that would need a collector: building the provider
        // builds no exporter (an unreadable CA file would fail otherwise).
        let c = parse(&[
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem"),
        ])
        .unwrap();
        tracer_provider(&c).unwrap();
    }

    #[test]
    fn ca_file_variables() {
        let c = parse(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", " /etc/ca.pem ")]).unwrap();
        assert_eq!(
            c.ca_file,
            Some(CaFile {
                var: "OTEL_EXPORTER_OTLP_CERTIFICATE",
                path: "/etc/ca.pem".into()
            })
        );
        // The per-signal variable wins.
        let c = parse(&[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/etc/traces-ca.pem",
            ),
        ])
        .unwrap();
        assert_eq!(
            c.ca_file,
            Some(CaFile {
                var: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                path: "/etc/traces-ca.pem".into()
            })
        );
    }

    /// A headers file is read for the OTLP exporter only; its errors name the variables.
    #[test]
    fn headers_file_for_the_otlp_exporter() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("headers");
        std::fs::write(&file, "x-honeycomb-team=s3cr3t\n").unwrap();
        let path = file.to_str().unwrap();
        let c = parse(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_HEADERS_FILE", path),
        ])
        .unwrap();
        let headers = c.otlp_headers.as_ref().unwrap();
        assert_eq!(headers.var, "OTEL_EXPORTER_OTLP_HEADERS_FILE");
        assert_eq!(headers.names().collect::<Vec<_>>(), ["x-honeycomb-team"]);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        // Not read for another exporter (nor when the SDK is disabled).
        for other in [
            &[("OTEL_TRACES_EXPORTER", "none")][..],
            &[("OTEL_TRACES_EXPORTER", "stdout")][..],
            &[
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_SDK_DISABLED", "true"),
            ][..],
        ] {
            let mut vars = vec![("OTEL_EXPORTER_OTLP_HEADERS_FILE", "/no/such/file")];
            vars.extend_from_slice(other);
            assert_eq!(parse(&vars).unwrap().otlp_headers, None, "{other:?}");
        }
        let err = parse(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "k=s3cr3t"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", path),
        ])
        .unwrap_err();
        assert_eq!(err.var(), "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
        let err = err.to_string();
        assert!(
            err.starts_with(
                "both OTEL_EXPORTER_OTLP_TRACES_HEADERS and \
                 OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE are set"
            ),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn protocols() {
        let c = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(c.protocol, OtlpProtocol::Grpc);
        let c = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).unwrap();
        assert_eq!(c.protocol, OtlpProtocol::HttpProtobuf);
        let err = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not valid: \
             expected one of `grpc`, `http/protobuf`"
        );
    }

    #[test]
    fn samplers() {
        use SamplerConfig::*;
        let sampler = |vars: &[(&str, &str)]| parse(vars).unwrap().sampler;
        assert_eq!(sampler(&[]), ParentBasedAlwaysOn);
        for (value, expected) in [
            ("always_on", AlwaysOn),
            ("ALWAYS_OFF", AlwaysOff),
            ("traceidratio", TraceIdRatio(1.0)),
            ("parentbased_always_on", ParentBasedAlwaysOn),
            ("parentbased_always_off", ParentBasedAlwaysOff),
            ("parentbased_traceidratio", ParentBasedTraceIdRatio(1.0)),
        ] {
            assert_eq!(
                sampler(&[("OTEL_TRACES_SAMPLER", value)]),
                expected,
                "{value}"
            );
        }
        // The argument: the ratio of the ratio samplers, ignored by the others.
        let with_arg = |name: &str| {
            sampler(&[
                ("OTEL_TRACES_SAMPLER", name),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ])
        };
        assert_eq!(with_arg("traceidratio"), TraceIdRatio(0.25));
        assert_eq!(
            with_arg("parentbased_traceidratio"),
            ParentBasedTraceIdRatio(0.25)
        );
        assert_eq!(with_arg("always_on"), AlwaysOn);
        // The argument alone: a parent-based ratio sampler (what it always meant here).
        assert_eq!(
            sampler(&[("OTEL_TRACES_SAMPLER_ARG", "0.5")]),
            ParentBasedTraceIdRatio(0.5)
        );

        let err = parse(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).unwrap_err();
        assert_eq!(err.var(), "OTEL_TRACES_SAMPLER");
        assert!(
            err.to_string()
                .contains("expected one of `always_on`, `always_off`, `traceidratio`"),
            "{err}"
        );
    }

    #[test]
    fn sampler_ratio() {
        for (value, ratio) in [("0", 0.0), ("0.25", 0.25), ("1", 1.0), ("1.0", 1.0)] {
            let c = parse(&[("OTEL_TRACES_SAMPLER_ARG", value)]).unwrap();
            assert_eq!(
                c.sampler,
                SamplerConfig::ParentBasedTraceIdRatio(ratio),
                "{value}"
            );
        }
        for sampler in [None, Some("traceidratio"), Some("parentbased_traceidratio")] {
            for bad in ["1.5", "-0.1", "half", "NaN"] {
                let mut vars = vec![("OTEL_TRACES_SAMPLER_ARG", bad)];
                vars.extend(sampler.map(|s| ("OTEL_TRACES_SAMPLER", s)));
                let err = parse(&vars).unwrap_err();
                assert_eq!(err.var(), "OTEL_TRACES_SAMPLER_ARG");
                assert!(
                    err.to_string()
                        .contains("expected a sampling ratio from 0 to 1"),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn service_name_and_logs() {
        let c = parse(&[
            ("OTEL_SERVICE_NAME", "bots-eu"),
            ("LOG_FORMAT", "JSON"),
            ("RUST_LOG", "warn,bot_server=debug"),
        ])
        .unwrap();
        assert_eq!(c.service_name, "bots-eu");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "warn,bot_server=debug");
        assert_eq!(
            parse(&[("LOG_FORMAT", "text")]).unwrap().log_format,
            LogFormat::Human
        );
        let err = parse(&[("RUST_LOG", "bot_server=loud")]).unwrap_err();
        assert_eq!(err.var(), "RUST_LOG");
        assert!(
            err.to_string()
                .starts_with("RUST_LOG=\"bot_server=loud\" is not valid")
        );
    }

    #[test]
    fn otlp_endpoint_as_the_exporter_resolves_it() {
        let none = |_: &str| None;
        let grpc = TelemetryConfig::default();
        let http = TelemetryConfig {
            protocol: OtlpProtocol::HttpProtobuf,
            ..TelemetryConfig::default()
        };
        assert_eq!(grpc.otlp_endpoint(none), "http://localhost:4317");
        assert_eq!(http.otlp_endpoint(none), "http://localhost:4318/v1/traces");
        let base = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:9/".to_owned());
        assert_eq!(grpc.otlp_endpoint(base), "http://c:9/");
        assert_eq!(http.otlp_endpoint(base), "http://c:9/v1/traces");
    }
}
