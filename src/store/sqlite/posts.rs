//! The SQL of the post queue (table `posts`, and `post_counts` kept by its triggers):
//! queueing with `ON CONFLICT` dedup on the content hash, the publisher's read of a target's
//! approved posts (pinned to its index), the status changes of sending, and dropping old
//! posted texts in id-range batches. Every write here waits for its commit: a post or a
//! Discord message id is never lost to a crash once the call returned.

use super::{Sqlite, from_ms, ms};
use crate::store::{Enqueued, Post, PostStatus, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

/// A target's approved posts, oldest first (see [`crate::store::Store::next_approved`]). The rows come in the
/// index's order (target, status, id), and the caller stops reading after a few: with
/// `ORDER BY id LIMIT n` SQLite re-prepared the statement on every call (a parameter-dependent
/// plan; it cost 8 % of the server's CPU at 1,000 runs/s).
const NEXT_APPROVED: &str =
    "SELECT * FROM posts INDEXED BY posts_by_status WHERE target = ?1 AND status = 'approved'";

impl Sqlite {
    #[tracing::instrument(name = "store.enqueue", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "insert"))]
    pub(in crate::store) async fn enqueue(
        &self,
        target: &str,
        content: &str,
        hash: &str,
        status: PostStatus,
        source: Option<(&str, i64)>,
        now: DateTime<Utc>,
    ) -> Result<Enqueued, StoreError> {
        self.write(|conn| {
            let inserted = conn
                .prepare_cached(
                "INSERT INTO posts (target, content, content_hash, status, source_actor, source_run, created_at, updated_at, attempts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, CASE ?4 WHEN 'sending' THEN 1 ELSE 0 END) ON CONFLICT (target, content_hash) DO NOTHING RETURNING id",
                )?
                .query_row(
                params![
                    target,
                    content,
                    hash,
                    status.as_str(),
                    source.map(|s| s.0),
                    source.map(|s| s.1),
                    ms(now)
                ],
                |r| r.get(0),
            )
                .optional()?;
            if let Some(id) = inserted {
                return Ok(Enqueued::New(id));
            }
            conn.prepare_cached("SELECT id FROM posts WHERE target = ?1 AND content_hash = ?2")?
                .query_row(params![target, hash], |r| r.get(0))
                .map(Enqueued::Duplicate)
        })
            .await
    }

    pub(in crate::store) fn posts(
        &self,
        status: Option<PostStatus>,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Post>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT * FROM posts WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR target = ?2) ORDER BY id LIMIT ?3",
            )?
            .query_map(
                params![status.map(PostStatus::as_str), target, i64::from(limit)],
                post_from_row,
            )?
            .collect()
        })
    }

    pub(in crate::store) fn post(&self, id: i64) -> Result<Option<Post>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM posts WHERE id = ?1")?
                .query_row([id], post_from_row)
                .optional()
        })
    }

    /// Rows of `post_counts`: `(status, n)`.
    pub(in crate::store) fn post_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            // Kept by triggers (migration 5): a few rows, however many posts were ever queued.
            conn.prepare_cached("SELECT status, n FROM post_counts")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    /// Moves post `id` from `from` to `to` (nothing if it is no longer `from`).
    pub(in crate::store) async fn set_status(
        &self,
        id: i64,
        from: PostStatus,
        to: PostStatus,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4",
            (to.as_str(), ms(now), id, from.as_str()),
        )
        .await
    }

    /// Rejects post `id` with `reason` if it is still `pending`; whether it was.
    pub(in crate::store) async fn decline(
        &self,
        id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.write(|conn| {
            conn.prepare_cached(
                "UPDATE posts SET status = 'rejected', last_error = ?1, updated_at = ?2 WHERE id = ?3 AND status = 'pending'",
            )?
            .execute((reason, ms(now), id))
            .map(|changed| changed == 1)
        })
        .await
    }

    pub(in crate::store) fn next_approved(&self, target: &str) -> Result<Vec<Post>, StoreError> {
        self.read(|conn| {
            let mut posts: Vec<Post> = conn
                .prepare_cached(NEXT_APPROVED)?
                .query_map(params![target], post_from_row)?
                .take(8)
                .collect::<rusqlite::Result<_>>()?;
            posts.sort_by_key(|p| p.id);
            Ok(posts)
        })
    }

    #[tracing::instrument(name = "store.mark_sending", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub(in crate::store) async fn mark_sending(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = 'sending', attempts = attempts + 1, updated_at = ?1 WHERE id = ?2",
            (ms(now), id),
        )
        .await
    }

    pub(in crate::store) async fn record_part(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_parts(id, parts_sent, message_ids, false, now)
            .await
    }

    #[tracing::instrument(name = "store.mark_posted", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub(in crate::store) async fn record_last_part(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.update_parts(id, parts_sent, message_ids, true, now)
            .await
    }

    #[tracing::instrument(name = "store.mark_posted", level = "info", skip_all, fields(db.system = "sqlite", db.operation.name = "update"))]
    pub(in crate::store) async fn mark_posted(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = 'posted', posted_at = ?1, updated_at = ?1, last_error = NULL WHERE id = ?2",
            (ms(now), id),
        )
        .await
    }

    pub(in crate::store) async fn mark_send_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET last_error = ?1, updated_at = ?2 WHERE id = ?3",
            (error, ms(now), id),
        )
        .await
    }

    pub(in crate::store) async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE posts SET status = 'failed', last_error = ?1, updated_at = ?2 WHERE id = ?3",
            (error, ms(now), id),
        )
        .await
    }

    /// The write behind `record_part` and `record_last_part`.
    async fn update_parts(
        &self,
        id: i64,
        parts_sent: u32,
        message_ids: &[String],
        posted: bool,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = if posted {
            "UPDATE posts SET parts_sent = ?1, message_ids = ?2, status = 'posted', posted_at = ?3, updated_at = ?3, last_error = NULL WHERE id = ?4"
        } else {
            "UPDATE posts SET parts_sent = ?1, message_ids = ?2, updated_at = ?3 WHERE id = ?4"
        };
        self.execute(
            sql,
            (i64::from(parts_sent), message_ids.join(","), ms(now), id),
        )
        .await
    }

    pub(in crate::store) async fn prune_posted_texts(
        &self,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Batches by id range (the primary key): each holds the store for about a millisecond,
        // and none re-reads rows an earlier batch already passed.
        let max_id: i64 = self.read(|conn| {
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM posts", [], |r| r.get(0))
        })?;
        let mut pruned = 0;
        let mut from = 0;
        while from < max_id {
            let to = from + 1000;
            pruned += self
                .write(|conn| {
                    Ok(conn.execute(
                        "UPDATE posts SET content = '' WHERE id > ?1 AND id <= ?2 \
                         AND status = 'posted' AND posted_at < ?3 AND content <> ''",
                        params![from, to, ms(before)],
                    )? as u64)
                })
                .await?;
            from = to;
            tokio::task::yield_now().await;
        }
        Ok(pruned)
    }
}

fn post_from_row(r: &Row<'_>) -> rusqlite::Result<Post> {
    let status: String = r.get("status")?;
    let ids: String = r.get("message_ids")?;
    Ok(Post {
        id: r.get("id")?,
        target: r.get("target")?,
        content: r.get("content")?,
        status: status.parse().unwrap_or(PostStatus::Pending),
        source_actor: r.get("source_actor")?,
        created_at: from_ms(r.get("created_at")?).unwrap_or_default(),
        updated_at: from_ms(r.get("updated_at")?).unwrap_or_default(),
        posted_at: from_ms(r.get("posted_at")?),
        message_ids: ids
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        parts_sent: r.get::<_, i64>("parts_sent")? as u32,
        attempts: r.get::<_, i64>("attempts")? as u32,
        last_error: r.get("last_error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor_state::{ActorState, RunOutcome};
    use crate::store::Store;
    use crate::store::sqlite::tests::act;

    #[tokio::test]
    async fn duplicate_content_is_detected_after_normalization() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let now = Utc::now();
        let a = store
            .enqueue("log", "Hello  World", PostStatus::Pending, None, now)
            .await
            .unwrap();
        let b = store
            .enqueue("log", " hello world\n", PostStatus::Pending, None, now)
            .await
            .unwrap();
        let c = store
            .enqueue("discord:1", "hello world", PostStatus::Pending, None, now)
            .await
            .unwrap();
        let Enqueued::New(id) = a else {
            panic!("{a:?}")
        };
        assert_eq!(b, Enqueued::Duplicate(id));
        assert!(matches!(c, Enqueued::New(_)));
    }

    /// A run's statements are prepared once, not re-planned on every run (it cost 8 % of the
    /// server's CPU when the publisher's query was).
    #[tokio::test]
    async fn the_statements_of_a_run_are_not_re_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        for i in 0..20 {
            let state = ActorState {
                name: format!("a{}", i % 3),
                ..Default::default()
            };
            let id = store
                .start_run(&state, None, Utc::now(), Utc::now())
                .await
                .unwrap();
            store.next_approved("log").await.unwrap();
            store.record_acts(id, &[act("draft")]).await.unwrap();
            let post = match store
                .enqueue(
                    "log",
                    &format!("post {i}"),
                    PostStatus::Sending,
                    Some((&state.name, id)),
                    Utc::now(),
                )
                .await
                .unwrap()
            {
                Enqueued::New(post) => post,
                other => panic!("{other:?}"),
            };
            store
                .record_last_part(post, 1, &[format!("m{i}")], Utc::now())
                .await
                .unwrap();
            store
                .finish_run(id, RunOutcome::Success, None, Utc::now(), &state)
                .await
                .unwrap();
        }
        let reprepared: i32 = store
            .read(|conn| {
                Ok(conn
                    .prepare_cached(NEXT_APPROVED)?
                    .get_status(rusqlite::StatementStatus::RePrepare))
            })
            .unwrap();
        assert_eq!(reprepared, 0);
    }

    /// Pruning drops the text of old posted posts only, and a pruned post still makes the same
    /// text a duplicate.
    #[tokio::test]
    async fn pruned_posts_keep_deduplicating() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let old = Utc::now() - chrono::Duration::days(100);
        let mut ids = Vec::new();
        for text in ["old and posted", "old but pending", "new and posted"] {
            match store
                .enqueue("log", text, PostStatus::Sending, None, old)
                .await
                .unwrap()
            {
                Enqueued::New(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        store
            .record_last_part(ids[0], 1, &["m0".into()], old)
            .await
            .unwrap();
        store
            .transition(
                ids[1],
                &[PostStatus::Sending],
                PostStatus::Pending,
                "pending",
                old,
            )
            .await
            .unwrap();
        store
            .record_last_part(ids[2], 1, &["m2".into()], Utc::now())
            .await
            .unwrap();
        let before = Utc::now() - chrono::Duration::days(90);
        assert_eq!(store.prune_posted_texts(before).await.unwrap(), 1);
        assert_eq!(store.prune_posted_texts(before).await.unwrap(), 0);
        let texts: Vec<String> = store
            .posts(None, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.content)
            .collect();
        assert_eq!(texts, vec!["", "old but pending", "new and posted"]);
        assert_eq!(
            store
                .enqueue(
                    "log",
                    "Old and  POSTED",
                    PostStatus::Pending,
                    None,
                    Utc::now()
                )
                .await
                .unwrap(),
            Enqueued::Duplicate(ids[0])
        );
    }

    /// The queue gauges read counts kept by triggers: after queueing, every kind of status
    /// change and a write from a second handle (as `bot-server posts` makes), they equal a full
    /// count of the posts.
    #[tokio::test]
    async fn post_counts_stay_exact_without_counting_posts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).await.unwrap();
        let now = Utc::now();
        let mut ids = Vec::new();
        for i in 0..6 {
            match store
                .enqueue("log", &format!("post {i}"), PostStatus::Pending, None, now)
                .await
                .unwrap()
            {
                Enqueued::New(id) => ids.push(id),
                other => panic!("{other:?}"),
            }
        }
        store
            .enqueue("log", "post 0", PostStatus::Pending, None, now)
            .await
            .unwrap();
        store
            .transition(
                ids[0],
                &[PostStatus::Pending],
                PostStatus::Approved,
                "approved",
                now,
            )
            .await
            .unwrap();
        store.mark_sending(ids[1], now).await.unwrap();
        store
            .record_last_part(ids[1], 1, &["m1".into()], now)
            .await
            .unwrap();
        store.mark_sending(ids[2], now).await.unwrap();
        store.mark_failed(ids[2], "refused", now).await.unwrap();
        store.mark_sending(ids[3], now).await.unwrap();
        let other = Store::open(dir.path(), None).await.unwrap();
        other
            .transition(
                ids[4],
                &[PostStatus::Pending],
                PostStatus::Rejected,
                "rejected",
                now,
            )
            .await
            .unwrap();
        other.close().await;
        let counted: Vec<(String, i64)> = store
            .read(|conn| {
                conn.prepare("SELECT status, COUNT(*) FROM posts GROUP BY status")?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .unwrap();
        let kept = store.post_counts().await.unwrap();
        for status in PostStatus::ALL {
            let want = counted
                .iter()
                .find(|(s, _)| s == status.as_str())
                .map_or(0, |(_, n)| *n as u64);
            let got = kept.iter().find(|(s, _)| *s == status).unwrap().1;
            assert_eq!(got, want, "{}", status.as_str());
        }
        assert_eq!(kept.iter().map(|(_, n)| n).sum::<u64>(), 6);
    }
}
