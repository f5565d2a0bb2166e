//! Serving: what `bot-server serve` runs, in the library so that integration tests run the same
//! sequence the binary ships: the admin server on the caller's listener, the scheduler until
//! `shutdown`, then, within the shutdown budget ([`crate::shutdown`]), the admin server stopped
//! and the store closed (its last writes committed, its serving lock released).

use crate::admin::{self, AdminState};
use crate::app::App;
use crate::scheduler::{self, SchedulerStatus};
use crate::shutdown::{ADMIN_DRAIN, Deadlines};
use crate::store::StoreError;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves `app` until `shutdown` resolves: admin HTTP on `listener` (the caller binds it, so
/// tests can use `127.0.0.1:0`), the scheduler reporting to `status`; then stops the admin
/// server (its connections get [`ADMIN_DRAIN`], whatever clients do) and closes the store.
/// Returns the deadlines of the stop: the caller has until [`Deadlines::exit`] for the rest
/// (the trace flush).
///
/// # Errors
///
/// When the scheduler cannot start (reading the actors' states from the store).
pub async fn run(
    app: Arc<App>,
    status: Arc<SchedulerStatus>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<Deadlines, StoreError> {
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_state = AdminState {
        app: app.clone(),
        status: status.clone(),
    };
    let mut admin = tokio::spawn(admin::serve(listener, admin_state, async {
        let _ = admin_stopped.await;
    }));
    let result = scheduler::run(app.clone(), status, shutdown).await;
    let _ = stop_admin.send(());
    // The admin server ends within its drain by itself; this bound is a second line of
    // defence, so the store is closed in time whatever happens there.
    match tokio::time::timeout(ADMIN_DRAIN * 2, &mut admin).await {
        Ok(Ok(Err(err))) => tracing::error!(cause = %err, "admin server failed"),
        Ok(Err(err)) => tracing::error!(cause = %err, "admin server task failed"),
        Ok(Ok(Ok(()))) => {}
        Err(_) => {
            tracing::error!("admin server did not stop in time; aborted");
            admin.abort();
        }
    }
    app.store.close().await;
    tracing::info!("bot-server stopped");
    result
}
