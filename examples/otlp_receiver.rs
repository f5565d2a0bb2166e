//! An OTLP receiver stand-in, **not Jaeger**: Jaeger cannot be installed on our CI hosts (no
//! image registry), so the end-to-end test runs this binary on the container network under the
//! service name `jaeger`, where the bot-server sends its traces.
//!
//! It is a thin shell around the library's [`bot_server::fakes::otlp::FakeOtlp`] (OTLP built
//! from the official opentelemetry-proto definitions):
//!
//! - `0.0.0.0:4317`: OTLP/gRPC (`TraceService/Export`), as Jaeger's collector;
//! - `0.0.0.0:4318`: OTLP/HTTP with protobuf bodies (`POST /v1/traces`), as Jaeger's collector;
//! - `0.0.0.0:16686`: Jaeger's UI port, but no UI and no Jaeger API. `GET /api/spans` answers
//!   the spans received so far as a JSON array of `{name, trace_id, span_id, parent_span_id,
//!   attributes, status, status_message, events, scope, resource, start_time_unix_nano,
//!   end_time_unix_nano, transport}` (optional filters `?name=` and `?trace_id=`); `GET
//!   /healthz` answers `ok`; `GET /` says what this is.
//!
//! Spans are kept in memory only. The addresses can be changed with `OTLP_GRPC_LISTEN`,
//! `OTLP_HTTP_LISTEN` and `SPANS_LISTEN`. It stops on SIGTERM or SIGINT.
//!
//!     cargo run --example otlp_receiver
//!     OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 cargo run
//!     curl -s localhost:16686/api/spans | jq '.[].name'

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use bot_server::fakes::otlp::{FakeOtlp, ReceivedSpan, StatusCode};
use serde_json::{Value, json};

const BANNER: &str = "OTLP receiver stand-in, not Jaeger: OTLP/gRPC on :4317, OTLP/HTTP on :4318; \
GET /api/spans lists the received spans as JSON. No Jaeger UI or API.\n";

struct Receivers {
    grpc: FakeOtlp,
    http: FakeOtlp,
}

impl Receivers {
    fn spans(&self) -> Vec<(&'static str, ReceivedSpan)> {
        let grpc = self.grpc.spans().into_iter().map(|s| ("grpc", s));
        let http = self.http.spans().into_iter().map(|s| ("http/protobuf", s));
        grpc.chain(http).collect()
    }
}

fn listen_addr(var: &str, default: &str) -> Result<SocketAddr, String> {
    let value = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    value
        .parse()
        .map_err(|err| format!("{var}={value:?} is not an address: {err}"))
}

fn span_json(transport: &str, span: &ReceivedSpan) -> Value {
    let status = match span.status_code {
        StatusCode::Unset => "unset",
        StatusCode::Ok => "ok",
        StatusCode::Error => "error",
    };
    json!({
        "name": span.name,
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "attributes": span.attributes,
        "status": status,
        "status_message": span.status_message,
        "events": span.events.iter().map(|e| json!({"name": e.name, "attributes": e.attributes})).collect::<Vec<_>>(),
        "scope": span.scope,
        "resource": span.resource,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "transport": transport,
    })
}

async fn api_spans(
    State(receivers): State<Arc<Receivers>>,
    Query(filter): Query<HashMap<String, String>>,
) -> Json<Vec<Value>> {
    let spans = receivers
        .spans()
        .into_iter()
        .filter(|(_, s)| filter.get("name").is_none_or(|n| *n == s.name))
        .filter(|(_, s)| filter.get("trace_id").is_none_or(|t| *t == s.trace_id))
        .map(|(transport, s)| span_json(transport, &s))
        .collect();
    Json(spans)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Prints, once a second, a summary of the spans that arrived, so `podman logs` shows what was
/// received without a line per span.
async fn log_arrivals(receivers: Arc<Receivers>) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let spans = receivers.spans();
        if spans.len() > seen {
            let mut names: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, span) in &spans[seen..] {
                *names.entry(span.name.as_str()).or_default() += 1;
            }
            let names: Vec<String> = names.iter().map(|(n, c)| format!("{n} x{c}")).collect();
            println!(
                "received {} spans ({} in total): {}",
                spans.len() - seen,
                spans.len(),
                names.join(", ")
            );
        }
        seen = spans.len();
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let grpc_addr = listen_addr("OTLP_GRPC_LISTEN", "0.0.0.0:4317")?;
    let http_addr = listen_addr("OTLP_HTTP_LISTEN", "0.0.0.0:4318")?;
    let spans_addr = listen_addr("SPANS_LISTEN", "0.0.0.0:16686")?;
    let grpc = FakeOtlp::start_on(grpc_addr)
        .await
        .map_err(|err| format!("cannot listen on {grpc_addr} (OTLP/gRPC): {err}"))?;
    let http = FakeOtlp::start_http_on(http_addr)
        .await
        .map_err(|err| format!("cannot listen on {http_addr} (OTLP/HTTP): {err}"))?;
    let receivers = Arc::new(Receivers { grpc, http });
    let router = Router::new()
        .route("/", get(|| async { BANNER }))
        .route("/healthz", get(|| async { "ok\n".into_response() }))
        .route("/api/spans", get(api_spans))
        .with_state(receivers.clone());
    let listener = tokio::net::TcpListener::bind(spans_addr)
        .await
        .map_err(|err| format!("cannot listen on {spans_addr} (span list): {err}"))?;
    println!(
        "OTLP receiver stand-in (not Jaeger): OTLP/gRPC on {}, OTLP/HTTP on {}, GET /api/spans on {}",
        receivers.grpc.addr(),
        receivers.http.addr(),
        spans_addr
    );
    tokio::spawn(log_arrivals(receivers.clone()));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|err| format!("span list server failed: {err}"))?;
    println!("stopped");
    Ok(())
}
