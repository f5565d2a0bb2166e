//! Where spans go: the SDK tracer provider (resource, sampler, batch span processor), the
//! OTLP and stdout span exporters, the process's resource attributes, and the span processor
//! that turns an error span's `error.message` into its status description.

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, Span as SdkSpan, SpanData, SpanProcessor,
};

use super::settings::{ExporterKind, OtlpProtocol, TelemetryConfig};
use super::tls::{grpc_tls, http_client_with_ca};

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
/// (when it has certificates) plus the CA file of `OTEL_EXPORTER_OTLP_CERTIFICATE`, and so
/// are the headers of a headers file (`OTEL_EXPORTER_OTLP_HEADERS_FILE`…), which the crate
/// does not read.
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
            if let Some(headers) = &config.otlp_headers {
                builder = builder.with_metadata(headers.metadata());
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
            if let Some(headers) = &config.otlp_headers {
                builder = builder.with_headers(headers.http_headers());
            }
            builder.build().map_err(setup_error)
        }
    }
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
    use crate::telemetry::settings::tests::parse;
    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};

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
