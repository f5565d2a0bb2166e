//! Traces and logs: the process-wide `tracing` subscriber, made of
//!
//! - a log layer (tracing-subscriber's fmt) writing to **stderr** (stdout carries command
//!   output), filtered by `RUST_LOG` (default `info`), human-readable or JSON lines
//!   (`LOG_FORMAT=json`); every line logged inside a span carries that span's fields, and so
//!   the `trace_id` that [`record_trace_id`] puts on a run's root span;
//! - an OpenTelemetry layer (tracing-opentelemetry) that turns the crate's spans into OTel spans
//!   of an SDK tracer provider, exported with the batch span processor by OTLP (gRPC or
//!   HTTP/protobuf), to stdout, or nowhere. It is installed even with `OTEL_EXPORTER=none`, so
//!   that trace ids exist and show in the logs.
//!
//! The OTel layer sees only the crate's own spans (target `bot_server…`, any level, so traces do
//! not depend on `RUST_LOG`) and its events at `INFO` and above (as span events); spans of the
//! libraries underneath (hyper, h2, tonic) are not exported.
//!
//! # Environment
//!
//! | variable | values | default |
//! | --- | --- | --- |
//! | `OTEL_EXPORTER` (or the standard `OTEL_TRACES_EXPORTER` when unset) | `otlp`, `stdout`, `none` | `none` |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc`, `http/protobuf` | `grpc` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of the collector | `http://localhost:4317` (gRPC), `http://localhost:4318` (HTTP; `/v1/traces` is appended) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full URL, used as is | |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_COMPRESSION` | as the OTel spec says (read by `opentelemetry-otlp`) | |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute | `bot-server` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | extra resource attributes, `k=v,k2=v2` | |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio 0..=1 of a parent-based trace-id-ratio sampler | `1.0` |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT` | batch span processor settings (read by the SDK) | 5000 ms, 2048, 512, 30000 ms |
//! | `RUST_LOG` | an `EnvFilter` for the logs | `info` |
//! | `LOG_FORMAT` | `json` for JSON lines, anything else for human-readable lines | human |
//!
//! Resource attributes: `service.name`, `service.version` (the crate version),
//! `service.instance.id` (a random UUID, version 4, drawn once per process), plus the SDK's
//! `telemetry.sdk.*`.
//!
//! Export never blocks a run: spans are queued (bounded; dropped when full) and exported by the
//! batch processor's own thread, and a collector that is down or late only costs failed
//! exports, logged by the SDK. [`Telemetry::shutdown`] flushes what is queued, bounded by
//! [`SHUTDOWN_TIMEOUT`], so the last run's trace survives a SIGTERM.

use std::fmt;
use std::io::IsTerminal as _;
use std::time::Duration;

use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, Span as SdkSpan, SpanData, SpanProcessor,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How long [`Telemetry::shutdown`] waits for the last spans to be exported.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// `service.name` when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "bot-server";

/// The name of the span field that [`record_trace_id`] fills.
pub const TRACE_ID_FIELD: &str = "trace_id";

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
    /// Ratio of new traces that are sampled (children follow their parent).
    pub sampler_ratio: f64,
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
            sampler_ratio: 1.0,
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

impl TelemetryConfig {
    /// Reads the process environment (see the module docs for the variables).
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `get` (the environment, or a map in tests). Unset and empty
    /// variables take their defaults; values are trimmed and compared case-insensitively.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = Self::default();

        let (exporter_var, exporter) = match get("OTEL_EXPORTER") {
            Some(v) => ("OTEL_EXPORTER", Some(v)),
            None => ("OTEL_TRACES_EXPORTER", get("OTEL_TRACES_EXPORTER")),
        };
        if let Some(value) = exporter {
            config.exporter = match value.to_ascii_lowercase().as_str() {
                "otlp" => ExporterKind::Otlp,
                "stdout" | "console" => ExporterKind::Stdout,
                "none" => ExporterKind::None,
                _ => {
                    return Err(EnvError {
                        var: exporter_var,
                        value,
                        expected: "one of `otlp`, `stdout`, `none`".into(),
                    });
                }
            };
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

        if let Some(value) = get("OTEL_TRACES_SAMPLER_ARG") {
            config.sampler_ratio = match value.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(EnvError {
                        var: "OTEL_TRACES_SAMPLER_ARG",
                        value,
                        expected: "a sampling ratio from 0 to 1, such as `0.25`".into(),
                    });
                }
            };
        }

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

/// The installed telemetry: keep it until the end of `main`, then call [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Reads the environment and installs the global subscriber. Must run inside the tokio
    /// runtime (the gRPC exporter's channel lives on it).
    pub fn init() -> anyhow::Result<Self> {
        let config = TelemetryConfig::from_env()?;
        Self::init_with(&config)
    }

    /// Installs the global subscriber for `config`: the log layer and the OTel layer over a
    /// tracer provider built by [`tracer_provider`]. Fails if a global subscriber is already
    /// set.
    pub fn init_with(config: &TelemetryConfig) -> anyhow::Result<Self> {
        let provider = tracer_provider(config)?;
        let tracer = provider.tracer("bot-server");
        // Log events become span events only for an exporter: with none, turning each into
        // attributes nobody reads was ~5 % of the server's CPU under load.
        let span_events = config.exporter != ExporterKind::None;
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(move |meta| {
                meta.target().starts_with("bot_server")
                    && (meta.is_span() || (span_events && *meta.level() <= tracing::Level::INFO))
            }));
        let log_filter = EnvFilter::builder().parse(&config.log_filter)?;
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        let fmt_layer = match config.log_format {
            LogFormat::Human => fmt.with_filter(log_filter).boxed(),
            LogFormat::Json => fmt
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .with_filter(log_filter)
                .boxed(),
        };
        tracing_subscriber::registry()
            .with(fmt_layer)
            .with(otel_layer)
            .try_init()?;
        if config.exporter == ExporterKind::Otlp {
            tracing::info!(
                endpoint = config.otlp_endpoint(|k| std::env::var(k).ok()),
                protocol = ?config.protocol,
                service = %config.service_name,
                "exporting traces by OTLP"
            );
        }
        Ok(Self { provider })
    }

    /// The tracer provider (to flush it by hand).
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Exports the spans still queued and stops the exporter, waiting at most
    /// [`SHUTDOWN_TIMEOUT`]; a collector that is down or slow only loses those spans.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flush =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT));
        match tokio::time::timeout(SHUTDOWN_TIMEOUT + Duration::from_secs(1), flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(cause = %err, "traces not flushed at shutdown"),
            Ok(Err(err)) => tracing::warn!(cause = %err, "traces not flushed at shutdown"),
            Err(_) => tracing::warn!(
                timeout = ?SHUTDOWN_TIMEOUT,
                "traces not flushed at shutdown: timed out"
            ),
        }
    }
}

/// The SDK tracer provider for `config`: resource, parent-based ratio sampler, and a batch
/// span processor with the configured exporter (none for [`ExporterKind::None`]). With OTLP
/// over gRPC it must be built inside the tokio runtime.
pub fn tracer_provider(config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    // A ratio of 1 is the SDK's always-on sampler: no per-trace-id arithmetic.
    let root_sampler = if config.sampler_ratio >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(config.sampler_ratio)
    };
    let builder = SdkTracerProvider::builder()
        .with_resource(resource(config))
        .with_sampler(Sampler::ParentBased(Box::new(root_sampler)));
    let builder = match config.exporter {
        ExporterKind::None => builder,
        ExporterKind::Stdout => builder.with_span_processor(ErrorDescription(
            BatchSpanProcessor::builder(opentelemetry_stdout::SpanExporter::default()).build(),
        )),
        ExporterKind::Otlp => {
            use opentelemetry_otlp::WithExportConfig as _;
            let exporter = match config.protocol {
                OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                    .build(),
                OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .build(),
            }
            .map_err(|err| {
                anyhow::anyhow!(
                    "cannot set up the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT, \
                     OTEL_EXPORTER_OTLP_PROTOCOL): {err}"
                )
            })?;
            builder.with_span_processor(ErrorDescription(
                BatchSpanProcessor::builder(exporter).build(),
            ))
        }
    };
    Ok(builder.build())
}

/// The resource: `service.name`, `service.version`, `service.instance.id`, the SDK's
/// attributes and `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource(config: &TelemetryConfig) -> Resource {
    Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", service_instance_id()),
        ])
        .build()
}

/// This process's `service.instance.id`: a random UUID (version 4), drawn once.
pub fn service_instance_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut bits: u128 = rand::random();
        bits = (bits & !(0xF << 76)) | (0x4 << 76); // version 4
        bits = (bits & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
        let hex = format!("{bits:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
    .clone()
}

/// The OTel trace id of `span` as 32 hex digits, or `None` when the span is disabled or no
/// OTel layer is installed.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx: Context = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Records the OTel trace id of `span` into its `trace_id` field (declared empty by the
/// caller: `trace_id = tracing::field::Empty`), so that every log line inside the span carries
/// it. Does nothing when the span has no trace id.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record(TRACE_ID_FIELD, tracing::field::display(id));
    }
}

/// A span processor in front of the batch processor: a span whose status is an error without
/// a description gets its `error.message` attribute as the description, so that collectors show
/// the message with the status (tracing-opentelemetry only fills the description from
/// `otel.status_description`).
struct ErrorDescription<P>(P);

impl<P> fmt::Debug for ErrorDescription<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ErrorDescription")
    }
}

impl<P: SpanProcessor> SpanProcessor for ErrorDescription<P> {
    fn on_start(&self, span: &mut SdkSpan, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if matches!(&span.status, Status::Error { description } if description.is_empty())
            && let Some(message) = span
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "error.message")
                .map(|kv| match &kv.value {
                    Value::String(s) => s.as_str().to_owned(),
                    other => other.to_string(),
                })
        {
            span.status = Status::error(message);
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<TelemetryConfig, EnvError> {
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
        assert_eq!(c.sampler_ratio, 1.0);
        assert_eq!(c.log_format, LogFormat::Human);
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn exporter_kinds() {
        for (value, kind) in [
            ("otlp", ExporterKind::Otlp),
            ("OTLP", ExporterKind::Otlp),
            (" stdout ", ExporterKind::Stdout),
            ("none", ExporterKind::None),
            ("", ExporterKind::None),
        ] {
            assert_eq!(parse(&[("OTEL_EXPORTER", value)]).unwrap().exporter, kind);
        }
        // The standard variable is the fallback; OTEL_EXPORTER wins.
        let c = parse(&[("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
        assert_eq!(c.exporter, ExporterKind::Otlp);
        let c = parse(&[("OTEL_EXPORTER", "none"), ("OTEL_TRACES_EXPORTER", "otlp")]).unwrap();
        assert_eq!(c.exporter, ExporterKind::None);
    }

    #[test]
    fn invalid_exporter_names_the_variable_and_the_choices() {
        let err = parse(&[("OTEL_EXPORTER", "jaeger")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER=\"jaeger\" is not valid: expected one of `otlp`, `stdout`, `none`"
        );
        let err = parse(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert_eq!(err.var, "OTEL_TRACES_EXPORTER");
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
    fn sampler_ratio() {
        for (value, ratio) in [("0", 0.0), ("0.25", 0.25), ("1", 1.0), ("1.0", 1.0)] {
            let c = parse(&[("OTEL_TRACES_SAMPLER_ARG", value)]).unwrap();
            assert_eq!(c.sampler_ratio, ratio, "{value}");
        }
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let err = parse(&[("OTEL_TRACES_SAMPLER_ARG", bad)]).unwrap_err();
            assert_eq!(err.var, "OTEL_TRACES_SAMPLER_ARG");
            assert!(
                err.to_string()
                    .contains("expected a sampling ratio from 0 to 1"),
                "{err}"
            );
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
        assert_eq!(err.var, "RUST_LOG");
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

    #[test]
    fn instance_id_is_a_uuid_v4_fixed_per_process() {
        let id = service_instance_id();
        assert_eq!(id, service_instance_id());
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'), "{id}");
        assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
    }

    #[test]
    fn trace_ids_exist_without_an_exporter_and_land_in_the_span_field() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = tracer_provider(&TelemetryConfig::default()).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("actor.run", trace_id = tracing::field::Empty);
            record_trace_id(&root);
            let id = trace_id(&root).expect("a trace id");
            assert_eq!(id.len(), 32);
            assert_ne!(id, "0".repeat(32));
            let child = root.in_scope(|| tracing::info_span!("narrative.act"));
            assert_eq!(trace_id(&child), Some(id));
        });
        assert_eq!(trace_id(&tracing::Span::none()), None);
    }

    #[test]
    fn error_message_becomes_the_status_description() {
        use opentelemetry::trace::Tracer as _;
        use std::sync::{Arc, Mutex};

        /// Keeps the spans that reach it.
        #[derive(Debug, Default, Clone)]
        struct Record(Arc<Mutex<Vec<SpanData>>>);
        impl SpanProcessor for Record {
            fn on_start(&self, _: &mut SdkSpan, _: &Context) {}
            fn on_end(&self, span: SpanData) {
                self.0.lock().unwrap().push(span);
            }
            fn force_flush(&self) -> OTelSdkResult {
                Ok(())
            }
            fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
                Ok(())
            }
        }

        let record = Record::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(ErrorDescription(record.clone()))
            .build();
        let tracer = provider.tracer("test");
        tracer.in_span("failed", |cx| {
            let span = cx.span();
            span.set_attribute(KeyValue::new("error.message", "bad request"));
            span.set_status(Status::error(""));
        });
        tracer.in_span("explained", |cx| {
            let span = cx.span();
            span.set_attribute(KeyValue::new("error.message", "ignored"));
            span.set_status(Status::error("own description"));
        });
        tracer.in_span("fine", |cx| {
            cx.span()
                .set_attribute(KeyValue::new("error.message", "not an error"));
        });
        let spans = record.0.lock().unwrap();
        assert_eq!(spans[0].status, Status::error("bad request"));
        assert_eq!(spans[1].status, Status::error("own description"));
        assert_eq!(spans[2].status, Status::Unset);
    }
}
