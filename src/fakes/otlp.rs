//! A stand-in for Jaeger's OTLP trace receiver, not Jaeger: it accepts OTLP trace exports and
//! keeps the spans in memory for tests to inspect. It stores and indexes nothing else, has no
//! query API and no UI.
//!
//! Its wire formats are the official OpenTelemetry protobuf definitions (`opentelemetry-proto`):
//!
//! - OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, served by tonic
//!   ([`FakeOtlp::start`], [`FakeOtlp::start_on`]), what Jaeger listens for on port 4317, also
//!   over TLS with a certificate the test gives ([`FakeOtlp::start_tls`]);
//! - OTLP/HTTP with protobuf bodies: `POST /v1/traces` with `Content-Type:
//!   application/x-protobuf`, served by axum ([`FakeOtlp::start_http`],
//!   [`FakeOtlp::start_http_on`]), what Jaeger listens for on port 4318. Other content types get
//!   415, undecodable bodies 400, as the OTLP spec says.
//!
//! Both listen on `127.0.0.1:0` by default, or on a given address (so that a container test
//! can run one as `jaeger:4317`), inside the current tokio runtime, until the value is dropped.
//! [`FakeOtlp::spans`] flattens what arrived into [`ReceivedSpan`]s: ids in lowercase hex,
//! attribute values stringified, the resource's attributes copied onto each span.
//! [`FakeOtlp::headers`] gives the request headers (HTTP) or metadata (gRPC) of each accepted
//! export, to check what the exporter authenticates with.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as HttpStatus, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as ProtoStatusCode;
use prost::Message as _;
use tokio::sync::{Notify, watch};

/// The OTLP transport a [`FakeOtlp`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP, protobuf bodies.
    HttpProtobuf,
}

/// A span's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

/// An event recorded on a span.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

/// One span as it arrived, flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub name: String,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Attribute values stringified: strings as is, numbers and bools by `Display`, arrays and
    /// maps as JSON-ish text, bytes as hex.
    pub attributes: BTreeMap<String, String>,
    pub status_code: StatusCode,
    pub status_message: String,
    pub events: Vec<ReceivedEvent>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// The attributes of the resource the span was exported with.
    pub resource: BTreeMap<String, String>,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
}

impl ReceivedSpan {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether this span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<Received>,
    arrived: Notify,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    requests: usize,
    /// The headers of each accepted export, in arrival order.
    headers: Vec<Headers>,
}

/// The headers of one export request: `(name, value)` pairs, names in lowercase, in the order
/// they came; a value that is not text is shown lossily (binary gRPC metadata as its base64).
pub type Headers = Vec<(String, String)>;

/// `(name, value)` pairs of an HTTP header map (or gRPC metadata made into one).
fn header_pairs(headers: &HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Received> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn accept(&self, request: ExportTraceServiceRequest, headers: Headers) {
        let spans = flatten(request);
        {
            let mut state = self.lock();
            state.requests += 1;
            state.headers.push(headers);
            state.spans.extend(spans);
        }
        self.arrived.notify_waiters();
    }
}

/// An in-process OTLP trace receiver (see the module docs).
pub struct FakeOtlp {
    addr: SocketAddr,
    transport: Transport,
    /// Whether it serves TLS.
    tls: bool,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl FakeOtlp {
    /// An OTLP/gRPC receiver on `127.0.0.1:0`. Panics if it cannot listen.
    pub async fn start() -> FakeOtlp {
        Self::start_on((Ipv4Addr::LOCALHOST, 0).into())
            .await
            .unwrap_or_else(|err| panic!("cannot start the fake OTLP/gRPC receiver: {err}"))
    }

    /// An OTLP/gRPC receiver on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeOtlp> {
        Self::start_grpc(addr, None).await
    }

    /// An OTLP/gRPC receiver over TLS on `127.0.0.1:0`, presenting the PEM certificate chain
    /// `cert_pem` with its private key `key_pem` (made by the test, for `127.0.0.1`); its
    /// [`endpoint`](Self::endpoint) is `https://…`. Panics if it cannot listen or the
    /// certificate is unusable.
    pub async fn start_tls(cert_pem: &str, key_pem: &str) -> FakeOtlp {
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem));
        Self::start_grpc((Ipv4Addr::LOCALHOST, 0).into(), Some(tls))
            .await
            .unwrap_or_else(|err| panic!("cannot start the fake OTLP/gRPC receiver (TLS): {err}"))
    }

    async fn start_grpc(
        addr: SocketAddr,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> std::io::Result<FakeOtlp> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (shutdown, mut stopped) = watch::channel(false);
        let service = TraceServiceServer::new(GrpcReceiver(shared.clone()));
        let is_tls = tls.is_some();
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls).map_err(std::io::Error::other)?;
        }
        tokio::spawn(async move {
            let served = server
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "fake OTLP/gRPC receiver stopped");
            }
        });
        Ok(FakeOtlp {
            addr,
            transport: Transport::Grpc,
            tls: is_tls,
            shared,
            shutdown,
        })
    }

    /// An OTLP/HTTP (protobuf) receiver on `127.0.0.1:0`. Panics if it cannot listen.
    pub async fn start_http() -> FakeOtlp {
        Self::start_http_on((Ipv4Addr::LOCALHOST, 0).into())
            .await
            .unwrap_or_else(|err| panic!("cannot start the fake OTLP/HTTP receiver: {err}"))
    }

    /// An OTLP/HTTP (protobuf) receiver on `addr`.
    pub async fn start_http_on(addr: SocketAddr) -> std::io::Result<FakeOtlp> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (shutdown, mut stopped) = watch::channel(false);
        let router = Router::new()
            .route("/v1/traces", post(http_export))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "fake OTLP/HTTP receiver stopped");
            }
        });
        Ok(FakeOtlp {
            addr,
            transport: Transport::HttpProtobuf,
            tls: false,
            shared,
            shutdown,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The transport it speaks.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:PORT`, or
    /// `https://…` over TLS (the HTTP exporter appends `/v1/traces` itself).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }

    /// How many export requests were accepted.
    pub fn export_count(&self) -> usize {
        self.shared.lock().requests
    }

    /// The request headers (HTTP) or metadata (gRPC) of each accepted export, in arrival order.
    pub fn headers(&self) -> Vec<Headers> {
        self.shared.lock().headers.clone()
    }

    /// Waits until `pred` holds for the spans received so far and returns them; after `timeout`
    /// returns `Err` with what arrived.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, Vec<ReceivedSpan>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let spans = self.spans();
            if pred(&spans) {
                return Ok(spans);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let spans = self.spans();
                return if pred(&spans) { Ok(spans) } else { Err(spans) };
            }
        }
    }
}

impl Drop for FakeOtlp {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl std::fmt::Debug for FakeOtlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOtlp")
            .field("addr", &self.addr)
            .field("transport", &self.transport)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

struct GrpcReceiver(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = header_pairs(&request.metadata().clone().into_headers());
        self.0.accept(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

const PROTOBUF: &str = "application/x-protobuf";

async fn http_export(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with(PROTOBUF) {
        return (
            HttpStatus::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: {PROTOBUF}, got {content_type:?}"),
        )
            .into_response();
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            shared.accept(request, header_pairs(&headers));
            let response = ExportTraceServiceResponse {
                partial_success: None,
            };
            ([(header::CONTENT_TYPE, PROTOBUF)], response.encode_to_vec()).into_response()
        }
        Err(err) => (
            HttpStatus::BAD_REQUEST,
            format!("not an ExportTraceServiceRequest: {err}"),
        )
            .into_response(),
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                let status = span.status.unwrap_or_default();
                out.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    attributes: attributes(&span.attributes),
                    status_code: match ProtoStatusCode::try_from(status.code) {
                        Ok(ProtoStatusCode::Ok) => StatusCode::Ok,
                        Ok(ProtoStatusCode::Error) => StatusCode::Error,
                        _ => StatusCode::Unset,
                    },
                    status_message: status.message,
                    events: span
                        .events
                        .iter()
                        .map(|e| ReceivedEvent {
                            name: e.name.clone(),
                            attributes: attributes(&e.attributes),
                        })
                        .collect(),
                    scope: scope.clone(),
                    resource: resource.clone(),
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(stringify).unwrap_or_default(),
            )
        })
        .collect()
}

fn stringify(value: &AnyValue) -> String {
    use any_value::Value;
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values
                .iter()
                .map(stringify)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Value::KvlistValue(l)) => format!(
            "{{{}}}",
            l.values
                .iter()
                .map(|kv| format!(
                    "{}: {}",
                    kv.key,
                    kv.value.as_ref().map(stringify).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Value::StringValueStrindex(i)) => format!("#{i}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
