//! The outbox: posts on their way to Discord. Each is sent by its claim's holder only
//! ([`crate::claims`]).
//!
//! - [`run`]: the re-send loop. A post left `sending` (the process died during its send, or the
//!   send failed for a reason that may pass: 429, 5xx, a timeout, the network) is sent again at
//!   start-up and then with backoff (1 s after its last attempt, doubling to 60 s), not at its
//!   actor's next fire: Discord remembers a message's nonce only for a few minutes, and only a
//!   re-send within that window is answered with the message it already created.

use crate::app::App;
use crate::discord::Target;
use crate::runner::{self, Attempt, Sender};
use crate::store::{Post, PostStatus};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the loop looks for posts to re-send.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts of one post.
const MAX_BACKOFF_SECONDS: i64 = 60;

/// When a post left `sending` is due again: 1 s after its last attempt, doubling with each
/// attempt up to 60 s.
pub fn next_attempt_at(post: &Post) -> DateTime<Utc> {
    let exponent = post.attempts.saturating_sub(1).min(6);
    let backoff = (1_i64 << exponent).min(MAX_BACKOFF_SECONDS);
    post.updated_at + chrono::Duration::seconds(backoff)
}

/// Re-sends posts left `sending` until `stop` fires: all of them at once at start-up, then each
/// when [`next_attempt_at`] comes. `cancel` ends a send that waits on a rate limit (after the
/// shutdown grace); a request that has gone out is completed and recorded, unless it is still
/// unanswered when the shutdown budget cuts it ([`crate::shutdown`]).
pub async fn run(app: Arc<App>, stop: CancellationToken, cancel: CancellationToken) {
    // Where each target key sends: the targets of every configured actor.
    let targets: HashMap<String, (String, Target)> = app
        .config
        .actors
        .iter()
        .map(|a| (a.target.key(), (a.target_name.clone(), a.target.clone())))
        .collect();
    let mut start_up = true;
    loop {
        if !start_up {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
        let posts = match app.store.posts(Some(PostStatus::Sending), None, 1000).await {
            Ok(posts) => posts,
            Err(err) => {
                tracing::warn!(cause = %err, "re-send loop: reading unsent posts failed");
                start_up = false;
                continue;
            }
        };
        for post in posts {
            if stop.is_cancelled() {
                return;
            }
            if !start_up && next_attempt_at(&post) > app.clock.now() {
                continue;
            }
            let Some(_claim) = app.claims.try_claim(post.id) else {
                continue;
            };
            let Some((target_name, target)) = targets.get(&post.target) else {
                // Set aside once, with the reason, instead of being looked at every second.
                let reason = format!(
                    "target {} is no longer used by any actor in the config: add it back and `bot-server posts retry {}`, or `bot-server posts reject {}`",
                    post.target, post.id, post.id
                );
                tracing::warn!(post = post.id, target = %post.target, "post left sending for a target no actor uses any more; set aside as failed");
                if let Err(err) = app
                    .store
                    .mark_failed(post.id, &reason, app.clock.now())
                    .await
                {
                    tracing::warn!(post = post.id, cause = %err, "cannot set the post aside");
                }
                app.metrics.posts_failed.inc();
                continue;
            };
            let sender = Sender {
                name: "re-send",
                target,
                target_name,
            };
            tracing::info!(
                post = post.id,
                attempts = post.attempts,
                parts_sent = post.parts_sent,
                "re-sending an unfinished post"
            );
            if let Err(err) = runner::publish(&app, &sender, &post, Attempt::New, &cancel).await {
                tracing::warn!(post = post.id, cause = %crate::error_chain(&err), "re-send failed");
            }
        }
        start_up = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Backoff: 1, 2, 4 ... 60 s after the last attempt.
    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let at = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let post = |attempts| Post {
            id: 1,
            target: "log".into(),
            content: "x".into(),
            status: PostStatus::Sending,
            source_actor: None,
            created_at: at,
            updated_at: at,
            posted_at: None,
            message_ids: vec![],
            parts_sent: 0,
            attempts,
            last_error: None,
        };
        let waits: Vec<i64> = [1, 2, 3, 4, 7, 30]
            .into_iter()
            .map(|n| (next_attempt_at(&post(n)) - at).num_seconds())
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 60, 60]);
    }
}
