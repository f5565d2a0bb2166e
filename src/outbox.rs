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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the loop looks for posts to re-send.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts of one post.
const MAX_BACKOFF_SECONDS: u64 = 60;

/// The wait after a post's `attempts`-th attempt: 1 s, doubling with each attempt up to 60 s.
fn backoff(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    Duration::from_secs((1_u64 << exponent).min(MAX_BACKOFF_SECONDS))
}

/// When each post's last attempt was, on the monotonic clock: a wait is timed from there, so
/// a step of the wall clock neither holds a post (a last attempt an hour "in the future"
/// after the clock went back) nor hurries it. A post first seen by this process takes its
/// last attempt from the store's wall-clock `updated_at`, never later than now.
#[derive(Default)]
struct LastAttempts {
    seen: HashMap<i64, (u32, Instant)>,
}

impl LastAttempts {
    /// Whether `post` is due, at `now` (wall) and `at` (monotonic).
    fn due(&mut self, post: &Post, now: DateTime<Utc>, at: Instant) -> bool {
        let (attempts, last) = *self.seen.entry(post.id).or_insert_with(|| {
            let ago = (now - post.updated_at).to_std().unwrap_or_default();
            (post.attempts, at.checked_sub(ago).unwrap_or(at))
        });
        if attempts != post.attempts {
            // Attempted since by someone else (a run): timed from now.
            self.seen.insert(post.id, (post.attempts, at));
            return false;
        }
        at.saturating_duration_since(last) >= backoff(post.attempts)
    }

    /// A new attempt of `post` starts at `at`.
    fn attempted(&mut self, post: &Post, at: Instant) {
        self.seen.insert(post.id, (post.attempts + 1, at));
    }

    /// Forgets posts that are no longer waiting.
    fn keep_only(&mut self, waiting: &[Post]) {
        self.seen
            .retain(|id, _| waiting.iter().any(|post| post.id == *id));
    }
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
    let mut last_attempts = LastAttempts::default();
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
                // Every second while the store fails: once a minute, with the count.
                let cause = crate::error_chain(&err);
                if let Some(repeated) = app.log_throttle.admit(&format!("re-send read\0{cause}")) {
                    tracing::warn!(cause, repeated, "re-send loop: reading unsent posts failed");
                }
                start_up = false;
                continue;
            }
        };
        last_attempts.keep_only(&posts);
        for post in posts {
            if stop.is_cancelled() {
                return;
            }
            let due = last_attempts.due(&post, app.clock.now(), Instant::now());
            if !start_up && !due {
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
            last_attempts.attempted(&post, Instant::now());
            tracing::info!(
                post = post.id,
                attempts = post.attempts,
                parts_sent = post.parts_sent,
                "re-sending an unfinished post"
            );
            if let Err(err) = runner::publish(&app, &sender, &post, Attempt::New, &cancel).await {
                // The same cause for every post (the store failing to write), each second:
                // once a minute, with the count.
                let cause = crate::error_chain(&err);
                if let Some(repeated) = app.log_throttle.admit(&format!("re-send\0{cause}")) {
                    tracing::warn!(post = post.id, cause, repeated, "re-send failed");
                }
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
        let waits: Vec<u64> = [1, 2, 3, 4, 7, 30]
            .into_iter()
            .map(|n| backoff(n).as_secs())
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 60, 60]);
    }

    /// Waits run on the monotonic clock: a post whose last attempt is recorded an hour in the
    /// future (the wall clock went back since) is due one backoff after it was first seen, not
    /// an hour later; a post attempted meanwhile by someone else waits from then.
    #[tokio::test(start_paused = true)]
    async fn waits_are_timed_on_the_monotonic_clock() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let post = Post {
            id: 1,
            target: "log".into(),
            content: "x".into(),
            status: PostStatus::Sending,
            source_actor: None,
            created_at: now,
            updated_at: now + chrono::Duration::hours(1),
            posted_at: None,
            message_ids: vec![],
            parts_sent: 0,
            attempts: 3,
            last_error: None,
        };
        let mut last = LastAttempts::default();
        let start = Instant::now();
        assert!(!last.due(&post, now, start));
        assert!(!last.due(&post, now, start + Duration::from_secs(3)));
        assert!(last.due(&post, now, start + Duration::from_secs(4)));
        // Ten seconds ago on the wall clock: due at once.
        let old = Post {
            id: 2,
            updated_at: now - chrono::Duration::seconds(10),
            ..post.clone()
        };
        assert!(last.due(&old, now, start));
        last.attempted(&old, start);
        let again = Post {
            attempts: 4,
            ..old.clone()
        };
        assert!(!last.due(&again, now, start + Duration::from_secs(7)));
        assert!(last.due(&again, now, start + Duration::from_secs(8)));
        // Attempted by a run meanwhile (attempts moved on): timed from when that was seen.
        let by_a_run = Post { attempts: 6, ..old };
        let seen = start + Duration::from_secs(9);
        assert!(!last.due(&by_a_run, now, seen));
        assert!(last.due(&by_a_run, now, seen + Duration::from_secs(32)));
    }
}
