//! The admin HTTP server (default `0.0.0.0:9090`): `/metrics` (Prometheus text), `/healthz`
//! (the process is alive) and `/readyz` (config loaded, state store answering and its writes
//! succeeding, scheduler loop ticking; otherwise 503 with a JSON body naming what is not
//! ready).
//!
//! It is served by hyper directly (HTTP/1 and HTTP/2, as `axum::serve` does) so that a client
//! cannot hold a connection, or the process's stop, open: a request's headers must arrive
//! within [`HEADER_READ_TIMEOUT`], and at shutdown open connections get
//! [`crate::shutdown::ADMIN_DRAIN`] to finish before they are closed.

use crate::app::App;
use crate::scheduler::SchedulerStatus;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinSet;

/// Longest a client may take to send a request's headers (HTTP/1) before its connection is
/// closed. Prometheus and health checks send theirs at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub app: Arc<App>,
    pub status: Arc<SchedulerStatus>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the admin routes on `listener` until `shutdown` resolves, then gives open
/// connections [`crate::shutdown::ADMIN_DRAIN`] to finish and closes the rest: it returns
/// within that bound of `shutdown`, whatever clients do.
///
/// # Errors
///
/// None at present (accept errors are logged and retried, as `axum::serve` does); the
/// `Result` keeps the signature of a server.
pub async fn serve(
    mut listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(state);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    // Owned here, so the connections still open after the drain are dropped with the set.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            // axum's accept: retries what can pass (a full file table waits 1 s), as its
            // `serve` does.
            accepted = Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let builder = builder.clone();
        connections.spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(cause = %err, "admin connection ended with an error");
            }
        });
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(crate::shutdown::ADMIN_DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "admin connections still open at shutdown: closed"
        );
    }
    connections.abort_all();
    Ok(())
}

async fn metrics(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    // Queue sizes are read from the store at scrape time, so they are right after restarts
    // and after `bot-server posts approve` from another process.
    match tokio::time::timeout(Duration::from_secs(5), state.app.store.post_counts()).await {
        Ok(Ok(counts)) => state.app.metrics.queue(&counts),
        Ok(Err(err)) => tracing::warn!(cause = %err, "cannot read queue sizes for /metrics"),
        Err(_) => tracing::warn!("reading queue sizes for /metrics timed out"),
    }
    // Content negotiation as Prometheus does it: OpenMetrics for scrapers that ask for it,
    // the classic text format for everyone else.
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    // Encoding thousands of series takes milliseconds of CPU: on the blocking pool, so the
    // scheduler and the runs keep both worker threads meanwhile.
    let app = state.app.clone();
    let encoded = tokio::task::spawn_blocking(move || {
        if wants_openmetrics {
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                app.metrics.encode(),
            )
        } else {
            (
                "text/plain; version=0.0.4; charset=utf-8",
                app.metrics.encode_prometheus_text(),
            )
        }
    })
    .await;
    match encoded {
        Ok((content_type, body)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(err) => {
            tracing::error!(cause = %err, "encoding /metrics failed");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let (ready, body) = readiness(&state).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Whether the server is ready, and a JSON report of each check.
pub async fn readiness(state: &AdminState) -> (bool, serde_json::Value) {
    let config = "ok".to_owned();
    let store = match tokio::time::timeout(Duration::from_secs(2), state.app.store.ping()).await {
        // Answering is not enough: a full disk or a damaged page fails every write while
        // `SELECT 1` still answers.
        Ok(Ok(())) => match state.app.store.write_health().problem() {
            None => "ok".to_owned(),
            Some(problem) => format!("not ready: {problem}"),
        },
        Ok(Err(err)) => format!("not ready: {}", crate::error_chain(&err)),
        Err(_) => "not ready: the state store did not answer within 2s".to_owned(),
    };
    let last_tick = state.status.last_tick_ms.load(Ordering::Relaxed);
    // The loop wakes at least every check interval; allow two of them plus slack.
    let check_ms = i64::try_from(state.app.config.server.check_interval_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000);
    let allowed_ms = check_ms.saturating_mul(2).saturating_add(5000);
    let now_ms = state.app.clock.now().timestamp_millis();
    let scheduler = if last_tick == 0 {
        "not ready: the scheduler loop has not started".to_owned()
    } else if now_ms - last_tick > allowed_ms {
        format!(
            "not ready: the scheduler loop last ticked {}s ago",
            (now_ms - last_tick) / 1000
        )
    } else {
        "ok".to_owned()
    };
    let ready = [&config, &store, &scheduler]
        .iter()
        .all(|c| c.as_str() == "ok");
    // Not a readiness check (a restart would not lift it), but an operator should see it:
    // nothing reaches Discord meanwhile.
    let discord = match state.app.delivery.global_pause() {
        Some(wait) if wait > crate::discord::LONG_RETRY_AFTER => format!(
            "paused: Discord's global rate limit holds every request for {}s more",
            wait.as_secs()
        ),
        _ => "ok".to_owned(),
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "config": config, "store": store, "scheduler": scheduler },
        "discord": discord,
        "runs_in_flight": state.status.running.load(Ordering::Relaxed),
    });
    (ready, body)
}
