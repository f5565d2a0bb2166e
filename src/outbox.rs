//! The outbox: posts on their way to Discord.
//!
//! - [`Claims`]: a post in flight is claimed by exactly one sender (an actor's run or the
//!   re-send loop), so no post is ever sent by two at once. The claim is in memory: one server
//!   serves a state directory (the store's serving lock), so the process is the only sender.
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
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the loop looks for posts to re-send.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts of one post.
const MAX_BACKOFF_SECONDS: i64 = 60;

/// Posts being sent right now.
#[derive(Debug, Default)]
pub struct Claims {
    in_flight: Mutex<HashSet<i64>>,
}

/// A post claimed for sending; released when dropped.
#[derive(Debug)]
pub struct Claim<'a> {
    claims: &'a Claims,
    id: i64,
}

impl Claims {
    /// Claims post `id`, or `None` when another sender has it.
    pub fn try_claim(&self, id: i64) -> Option<Claim<'_>> {
        let inserted = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            in_flight.insert(id)
        };
        // Built only when this call inserted the id: a `Claim` dropped here would release
        // another sender's claim.
        inserted.then(|| Claim { claims: self, id })
    }

    /// Whether post `id` is being sent.
    pub fn is_claimed(&self, id: i64) -> bool {
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.contains(&id)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut in_flight = self
            .claims
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        in_flight.remove(&self.id);
    }
}

/// When a post left `sending` is due again: 1 s after its last attempt, doubling with each
/// attempt up to 60 s.
pub fn next_attempt_at(post: &Post) -> DateTime<Utc> {
    let exponent = post.attempts.saturating_sub(1).min(6);
    let backoff = (1_i64 << exponent).min(MAX_BACKOFF_SECONDS);
    post.updated_at + chrono::Duration::seconds(backoff)
}

/// Re-sends posts left `sending` until `stop` fires: all of them at once at start-up, then each
/// when [`next_attempt_at`] comes. `cancel` ends a send that waits on a rate limit (after the
/// shutdown grace); a request that has gone out is completed and recorded.
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

    /// One claim per post; a dropped claim frees the post.
    #[test]
    fn a_post_has_one_claim_at_a_time() {
        let claims = Claims::default();
        let first = claims.try_claim(7).expect("free");
        assert!(claims.try_claim(7).is_none());
        assert!(claims.try_claim(8).is_some());
        assert!(claims.is_claimed(7));
        drop(first);
        assert!(!claims.is_claimed(7));
        assert!(claims.try_claim(7).is_some());
    }

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
