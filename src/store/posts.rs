//! The post queue: queueing a post (deduplicated on its normalized text per target), listing
//! and counting posts, an operator's decisions (approve, reject, retry), a sender's steps
//! (`approved → sending → posted`, or `failed`, with each part's Discord message id stored as
//! it is accepted), and dropping the text of old posted posts. These are the public [`Store`]
//! methods and the rules any backend shares (what "the same post" means, which status changes
//! are allowed); the SQL is the backend's (`sqlite/posts.rs`).

use super::{Enqueued, Post, PostStatus, Store, StoreError, backend};
use chrono::{DateTime, Utc};

/// Lowercased, whitespace-collapsed text: what "the same post" means for dedup.
pub fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hash a post is deduplicated on: SHA-256 of its [`normalize`]d text, in hex.
pub(crate) fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(normalize(text).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Queues a post for `target` unless the same normalized text is already there. A post
    /// queued as [`PostStatus::Sending`] (about to be sent) counts its first attempt.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn enqueue(
        &self,
        target: &str,
        content: &str,
        status: PostStatus,
        source: Option<(&str, i64)>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        let hash = content_hash(content);
        backend!(self, db => db.enqueue(target, content, &hash, status, source, now).await)
    }

    /// Posts with `status`, oldest first, optionally for one target.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn posts(
        &self,
        status: Option<PostStatus>,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Post>, StoreError> {
        backend!(self, db => db.posts(status, target, limit))
    }

    /// One post.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn post(&self, id: i64) -> Result<Option<Post>, StoreError> {
        backend!(self, db => db.post(id))
    }

    /// Number of posts per status, every status listed.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn post_counts(&self) -> Result<Vec<(PostStatus, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = backend!(self, db => db.post_counts())?;
        let mut out: Vec<(PostStatus, u64)> = PostStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for (status, n) in rows {
            if let Some(slot) = out.iter_mut().find(|(s, _)| s.as_str() == status) {
                slot.1 = n as u64;
            }
        }
        Ok(out)
    }

    /// Moves a post from one of `from` to `to` (approve, reject).
    ///
    /// # Errors
    ///
    /// When the post does not exist or is in another status.
    pub async fn transition(
        &self,
        id: i64,
        from: &[PostStatus],
        to: PostStatus,
        verb: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let post = self.post(id).await?.ok_or(StoreError::NoSuchPost(id))?;
        if !from.contains(&post.status) {
            return Err(StoreError::WrongStatus {
                id,
                status: post.status.as_str().into(),
                allowed: from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                verb: verb.into(),
            });
        }
        backend!(self, db => db.set_status(id, post.status, to, now).await)
    }

    /// Rejects post `id` with `reason` (a curator's "not approved by ..."), only if it is
    /// still `pending`: a post an operator or another curator moved meanwhile is left as it
    /// is. Returns whether it was rejected.
    ///
    /// # Errors
    ///
    /// On a store error.
    pub async fn decline(
        &self,
        id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        backend!(self, db => db.decline(id, reason, now).await)
    }

    /// The 8 oldest approved posts of `target`, for a publisher to pick the first one no other
    /// sender has claimed (a post left `sending` is the re-send loop's, not a publisher's).
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn next_approved(&self, target: &str) -> Result<Vec<Post>, StoreError> {
        backend!(self, db => db.next_approved(target))
    }

    /// Marks a post as being sent, before the request goes out.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn mark_sending(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        backend!(self, db => db.mark_sending(id, now).await)
    }

    /// Records that part `parts_sent - 1` of a post was accepted, with its message id.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn record_part(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        backend!(self, db => db.record_part(id, parts_sent, message_ids, now).await)
    }

    /// Records the last part of a post as accepted and the post as posted, in one statement.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn record_last_part(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        backend!(self, db => db.record_last_part(id, parts_sent, message_ids, now).await)
    }

    /// Marks a post as posted (every part accepted).
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn mark_posted(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        backend!(self, db => db.mark_posted(id, now).await)
    }

    /// Records a failed send; the post stays in the queue (`sending`) and is retried, with the
    /// same nonces, on the next attempt.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn mark_send_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        backend!(self, db => db.mark_send_failed(id, error, now).await)
    }

    /// Marks a post `failed` with the reason Discord gave: it is not sent again unless an
    /// operator retries it, and later posts of its actor and target are not held up by it.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        backend!(self, db => db.mark_failed(id, error, now).await)
    }

    /// Drops the text of posts posted before `before`, keeping each row (target, content hash,
    /// message ids, dates) so duplicate detection still sees everything ever posted. Works in
    /// batches of 1,000, so the store is never held for long. Returns how many were pruned.
    ///
    /// # Errors
    ///
    /// On a database error.
    pub async fn prune_posted_texts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        backend!(self, db => db.prune_posted_texts(before).await)
    }
}
