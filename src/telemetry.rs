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
//! | `OTEL_TRACES_EXPORTER` (alias: `OTEL_EXPORTER`; both set to different values is an error) | `otlp`, `stdout` (or `console`), `none` | `none` |
//! | `OTEL_SDK_DISABLED` | `true`: no exporter is built and nothing is exported, whatever `OTEL_TRACES_EXPORTER` says (trace ids still show in the logs); `false` | `false` |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc`, `http/protobuf` | `grpc` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of the collector; `https://` for TLS | `http://localhost:4317` (gRPC), `http://localhost:4318` (HTTP; `/v1/traces` is appended) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | full URL, used as is | |
//! | `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, else `OTEL_EXPORTER_OTLP_CERTIFICATE` | a PEM file of CA certificates trusted for the collector, on top of the OS trust store | the OS trust store only |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_COMPRESSION`, `OTEL_EXPORTER_OTLP_INSECURE` | as the OTel spec says (read by `opentelemetry-otlp`) | |
//! | `OTEL_SERVICE_NAME` | the `service.name` resource attribute | `bot-server` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | extra resource attributes, `k=v,k2=v2` | |
//! | `OTEL_TRACES_SAMPLER` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` | `parentbased_always_on`, or `parentbased_traceidratio` when only `OTEL_TRACES_SAMPLER_ARG` is set |
//! | `OTEL_TRACES_SAMPLER_ARG` | ratio 0..=1 of the `*traceidratio` samplers (ignored by the others) | `1.0` |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT` | batch span processor settings (read by the SDK) | 5000 ms, 2048, 512, 30000 ms |
//! | `RUST_LOG` | an `EnvFilter` for the logs | `info` |
//! | `LOG_FORMAT` | `json` for JSON lines, anything else for human-readable lines | human |
//!
//! # TLS to the collector
//!
//! An `https://` endpoint is reached over TLS (rustls) for both protocols. The certificate is
//! checked against the OS trust store (`/etc/ssl/certs`…, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` when set) plus the CA file of `OTEL_EXPORTER_OTLP_CERTIFICATE`; no roots are
//! bundled in the binary. A CA file that cannot be read stops the start-up; a collector whose
//! certificate is not trusted only fails its exports (logged, as any export error).
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

/// Which spans are sampled (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`): the
/// OpenTelemetry SDK's built-in samplers. A parent-based sampler follows the parent's decision
/// for child spans and uses the inner sampler for root spans (the run's `actor.run`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    /// `always_on`: every span.
    AlwaysOn,
    /// `always_off`: none.
    AlwaysOff,
    /// `traceidratio`: this ratio (0..=1) of trace ids, whatever the parent decided.
    TraceIdRatio(f64),
    /// `parentbased_always_on` (the default).
    ParentBasedAlwaysOn,
    /// `parentbased_always_off`.
    ParentBasedAlwaysOff,
    /// `parentbased_traceidratio`: this ratio of new traces.
    ParentBasedTraceIdRatio(f64),
}

impl SamplerConfig {
    /// The SDK's sampler. A ratio of 1 is the always-on sampler (no per-trace-id arithmetic).
    pub fn sampler(self) -> Sampler {
        let ratio = |r: f64| {
            if r >= 1.0 {
                Sampler::AlwaysOn
            } else {
                Sampler::TraceIdRatioBased(r)
            }
        };
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(r) => ratio(r),
            Self::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            Self::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Self::ParentBasedTraceIdRatio(r) => Sampler::ParentBased(Box::new(ratio(r))),
        }
    }
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

/// The SDK tracer provider for `config`: resource, sampler, and a batch span processor with
/// the configured exporter (none for [`ExporterKind::None`]). With OTLP over gRPC it must be
/// built inside the tokio runtime.
pub fn tracer_provider(config: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder()
        .with_resource(resource(config))
        .with_sampler(config.sampler.sampler());
    let builder = match config.exporter {
        ExporterKind::None => builder,
        ExporterKind::Stdout => builder.with_span_processor(ErrorDescription(
            BatchSpanProcessor::builder(opentelemetry_stdout::SpanExporter::default()).build(),
        )),
        ExporterKind::Otlp => {
            let exporter = otlp_exporter(config, |k| std::env::var(k).ok())?;
            builder.with_span_processor(ErrorDescription(
                BatchSpanProcessor::builder(exporter).build(),
            ))
        }
    };
    Ok(builder.build())
}

/// The OTLP span exporter for `config`. The endpoint, timeout, headers and compression are
/// read by `opentelemetry-otlp` from the environment; TLS is set up here: the OS trust store
/// (when it has certificates) plus the CA file of `OTEL_EXPORTER_OTLP_CERTIFICATE`.
fn otlp_exporter(
    config: &TelemetryConfig,
    get: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
    let ca = match &config.ca_file {
        Some(ca) => Some(std::fs::read(&ca.path).map_err(|err| {
            anyhow::anyhow!(
                "{}={}: cannot read the CA file: {err}",
                ca.var,
                ca.path.display()
            )
        })?),
        None => None,
    };
    let setup_error = |err: opentelemetry_otlp::ExporterBuildError| {
        anyhow::anyhow!(
            "cannot set up the OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT, \
             OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_CERTIFICATE): {}",
            crate::error_chain(&err)
        )
    };
    match config.protocol {
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc);
            // A plain `http://` collector needs no TLS set-up (nor the trust store loaded).
            if !config.otlp_endpoint(&get).starts_with("http://") {
                builder = builder.with_tls_config(grpc_tls(ca.as_deref()));
            }
            builder.build().map_err(setup_error)
        }
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            // Without a CA file, the exporter's own client (reqwest with rustls and the OS
            // trust store) is the right one.
            if let Some(pem) = ca {
                builder = builder.with_http_client(http_client_with_ca(config, &pem, &get)?);
            }
            builder.build().map_err(setup_error)
        }
    }
}

/// TLS for OTLP/gRPC: the OS trust store when it has certificates (tonic refuses an empty
/// one, and a CA file alone must still work in a container without `ca-certificates`), plus
/// the CA file's certificates.
fn grpc_tls(ca: Option<&[u8]>) -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    let mut tls = ClientTlsConfig::new();
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        tls = tls.with_native_roots();
    }
    if let Some(pem) = ca {
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    tls
}

/// The blocking reqwest client of the OTLP/HTTP exporter (what `opentelemetry-otlp` builds by
/// default), trusting the CA file's certificates besides the OS trust store. Built on a thread
/// of its own: a blocking client cannot be built on a tokio runtime thread.
fn http_client_with_ca(
    config: &TelemetryConfig,
    pem: &[u8],
    get: &impl Fn(&str) -> Option<String>,
) -> anyhow::Result<reqwest::blocking::Client> {
    let var = config.ca_file.as_ref().map_or("", |ca| ca.var);
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|err| anyhow::anyhow!("{var}: not a PEM file of certificates: {err}"))?;
    anyhow::ensure!(!certs.is_empty(), "{var}: no certificate in the file");
    // The exporter's timeout, as `opentelemetry-otlp` resolves it (10 s by default).
    let timeout = [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|var| get(var)?.trim().parse::<u64>().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis);
    std::thread::spawn(move || {
        certs
            .into_iter()
            .fold(
                reqwest::blocking::Client::builder().timeout(timeout),
                reqwest::blocking::ClientBuilder::add_root_certificate,
            )
            .build()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread building the OTLP/HTTP client panicked"))?
    .map_err(|err| {
        anyhow::anyhow!(
            "cannot build the OTLP/HTTP client: {}",
            crate::error_chain(&err)
        )
    })
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

    #[test]
    fn unreadable_ca_file_is_named() {
        let c = parse(&[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/no/such/ca.pem"),
        ])
        .unwrap();
        let err = otlp_exporter(&c, |_| None).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=/no/such/ca.pem: cannot read the CA file"
            ),
            "{err}"
        );
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
        assert_eq!(err.var, "OTEL_TRACES_SAMPLER");
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
                assert_eq!(err.var, "OTEL_TRACES_SAMPLER_ARG");
                assert!(
                    err.to_string()
                        .contains("expected a sampling ratio from 0 to 1"),
                    "{err}"
                );
            }
        }
    }

    /// What each setting samples, decided by the SDK's own samplers: root spans, and children
    /// of a sampled and of an unsampled remote parent.
    #[test]
    fn samplers_decide_as_the_spec_says() {
        use SamplerConfig::*;
        use opentelemetry::trace::{
            SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState,
        };
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample as _};

        let parent = |sampled: bool| {
            let flags = if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            ))
        };
        // How many of 1000 root spans (spread trace ids) are sampled, and whether a child of a
        // sampled and of an unsampled parent is.
        let decide = |config: SamplerConfig| {
            let sampler = config.sampler();
            let sampled = |cx: Option<&Context>, id: u128| {
                sampler
                    .should_sample(cx, TraceId::from(id), "s", &SpanKind::Internal, &[], &[])
                    .decision
                    == SamplingDecision::RecordAndSample
            };
            let roots = (1..=1000u128)
                .filter(|i| {
                    sampled(
                        None,
                        i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                    )
                })
                .count();
            (
                roots,
                sampled(Some(&parent(true)), 7),
                sampled(Some(&parent(false)), 7),
            )
        };
        assert_eq!(decide(AlwaysOn), (1000, true, true));
        assert_eq!(decide(AlwaysOff), (0, false, false));
        assert_eq!(decide(ParentBasedAlwaysOn), (1000, true, false));
        assert_eq!(decide(ParentBasedAlwaysOff), (0, true, false));
        let (roots, _, _) = decide(TraceIdRatio(0.25));
        assert!((150..350).contains(&roots), "{roots}");
        let (roots, child_of_sampled, child_of_unsampled) = decide(ParentBasedTraceIdRatio(0.25));
        assert!((150..350).contains(&roots), "{roots}");
        assert!(child_of_sampled && !child_of_unsampled);
        assert_eq!(decide(ParentBasedTraceIdRatio(1.0)), (1000, true, false));
        assert_eq!(decide(TraceIdRatio(0.0)).0, 0);
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
