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
//! | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS` (or either's `_FILE`) | headers sent with every export (collector tokens): `name=value` entries separated by commas, values percent-encoded; the plain variables are read by `opentelemetry-otlp`, a `_FILE` (the same list; newlines also separate entries) by `headers` and given to the exporter. A variable and its `_FILE` both set is an error, as is `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE` with a plain `OTEL_EXPORTER_OTLP_HEADERS`; a malformed entry of a file is an error naming the variable and the entry's number, never its value | |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_COMPRESSION`, `OTEL_EXPORTER_OTLP_INSECURE` | as the OTel spec says (read by `opentelemetry-otlp`) | |
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
//!
//! # Modules
//!
//! - `settings`: reading and validating the environment above into a [`TelemetryConfig`].
//! - `sampler`: the `OTEL_TRACES_SAMPLER` settings and the SDK samplers they stand for.
//! - `export`: the tracer provider, its resource and the span exporters.
//! - `tls`: the trust store of the OTLP exporter (OS roots plus the CA file).
//! - `headers`: the headers files (`OTEL_EXPORTER_OTLP_HEADERS_FILE`…), parsed into the
//!   exporter's gRPC metadata or HTTP headers.
//! - `throttle`: [`LogThrottle`], a repeated log line at most once a minute, with its count.
//!
//! This file installs the subscriber (the log layer and the OTel layer), owns the guard that
//! flushes at shutdown, and puts trace ids on spans.

use std::io::IsTerminal as _;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod export;
mod headers;
mod sampler;
mod settings;
mod throttle;
mod tls;

pub use export::{resource, service_instance_id, tracer_provider};
pub use headers::{HeadersError, OtlpHeaders};
pub use sampler::SamplerConfig;
pub use settings::{
    CaFile, DEFAULT_SERVICE_NAME, EnvError, ExporterKind, LogFormat, OtlpProtocol, SettingsError,
    TelemetryConfig,
};
pub use throttle::{LOG_REPEAT_INTERVAL, LogThrottle};

/// How long [`Telemetry::shutdown`] waits for the last spans to be exported.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The name of the span field that [`record_trace_id`] fills.
pub const TRACE_ID_FIELD: &str = "trace_id";

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
                // Where the headers come from, and their names: never their values.
                headers_file = config.otlp_headers.as_ref().map(|h| h.var),
                header_names = config
                    .otlp_headers
                    .as_ref()
                    .map(|h| h.names().collect::<Vec<_>>().join(",")),
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
        self.shutdown_within(SHUTDOWN_TIMEOUT).await;
    }

    /// [`Telemetry::shutdown`] waiting at most `bound` (what is left of the shutdown budget).
    pub async fn shutdown_within(self, bound: Duration) {
        let provider = self.provider;
        let flush = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(bound));
        match tokio::time::timeout(bound, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(cause = %err, "traces not flushed at shutdown"),
            Ok(Err(err)) => tracing::warn!(cause = %err, "traces not flushed at shutdown"),
            Err(_) => tracing::warn!(
                timeout = ?bound,
                "traces not flushed at shutdown: timed out"
            ),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
