//! One actor run: what an actor does once it is due, by its action.
//!
//! - `post`: runs the narrative and posts its final output (posts left unsent by a failure or
//!   a crash are re-sent by the outbox's loop, not by the actor's next run).
//! - `generate`: runs the narrative; its final output (a JSON list) becomes pending posts.
//! - `curate`: shows pending posts to the narrative (`{{ pending_posts }}`); approves the ids
//!   it returns.
//! - `publish`: sends the oldest approved post of the target that no other sender has
//!   claimed.
//!
//! A post is stored before it is sent and marked `sending` before each request; each part's
//! Discord message id is stored as soon as Discord accepts it, and the post becomes `posted`
//! only when every part is accepted.

use crate::app::App;
use crate::config::{Action, Actor};
use crate::discord::Target;
use crate::discord::{DeliveryError, MAX_MESSAGE_CHARS, split_message};
use crate::narrative::{ActOutput, NarrativeError, RunOptions, extract_json};
use crate::store::{Enqueued, Post, PostStatus, StoreError};
use minijinja::Value;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Narrative(#[from] NarrativeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("post {post_id} was not delivered")]
    Delivery {
        post_id: i64,
        #[source]
        source: DeliveryError,
    },
    #[error("narrative `{narrative}`: {message}")]
    Output { narrative: String, message: String },
}

impl RunError {
    /// Whether the run stopped because the server is shutting down.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Narrative(NarrativeError::Cancelled { .. }))
    }

    /// Whether this failure counts against the actor's circuit breaker: it says something
    /// about the actor that its next run would meet again (its narrative or model failed, its
    /// output is unusable, its target refuses the bot: 401, 403, 404, no token). A post that
    /// Discord refused for what it says (400 such as AutoMod, 413) or could not take just then
    /// (429, 5xx, a timeout, a webhook that may have posted) does not: the post is kept or set
    /// aside with its reason, and the next run goes ahead.
    pub fn counts_against_circuit(&self) -> bool {
        match self {
            Self::Delivery { source, .. } => matches!(
                source,
                DeliveryError::Unauthorized
                    | DeliveryError::WebhookUnauthorized
                    | DeliveryError::Forbidden { .. }
                    | DeliveryError::NotFound { .. }
                    | DeliveryError::MissingToken
            ),
            _ => true,
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub acts: usize,
    pub enqueued: usize,
    pub duplicates: usize,
    pub approved: usize,
    /// Posts a curator was shown and did not approve (rejected).
    pub declined: usize,
    pub published: Vec<i64>,
}

/// Runs `actor` once as run `run_id`. `cancel` stops the narrative between acts and a Discord
/// send that waits for a rate limit; a Discord request that has gone out is completed and
/// recorded, unless the shutdown budget cuts it first ([`crate::shutdown`]).
///
/// # Errors
///
/// The first step that failed.
pub async fn run_actor(
    app: &App,
    actor: &Actor,
    run_id: i64,
    cancel: &CancellationToken,
) -> Result<RunSummary, RunError> {
    match actor.action {
        Action::Publish => publish_next(app, actor, cancel).await,
        Action::Post => post(app, actor, run_id, cancel).await,
        Action::Generate => generate(app, actor, run_id, cancel).await,
        Action::Curate => curate(app, actor, run_id, cancel).await,
    }
}

/// `publish`: sends the oldest approved post of the target that no other sender has claimed.
async fn publish_next(
    app: &App,
    actor: &Actor,
    cancel: &CancellationToken,
) -> Result<RunSummary, RunError> {
    let mut summary = RunSummary::default();
    let target = actor.target.key();
    let approved = app.store.next_approved(&target).await?;
    // The oldest approved post no other sender (another publisher of the target) has.
    let claimed = approved
        .into_iter()
        .find_map(|post| app.claims.try_claim(post.id).map(|claim| (post, claim)));
    if let Some((post, _claim)) = claimed {
        publish(app, &Sender::of(actor), &post, Attempt::New, cancel).await?;
        summary.published.push(post.id);
    }
    Ok(summary)
}

/// `post`: runs the narrative and sends its final output at once.
async fn post(
    app: &App,
    actor: &Actor,
    run_id: i64,
    cancel: &CancellationToken,
) -> Result<RunSummary, RunError> {
    let mut summary = RunSummary::default();
    let target = actor.target.key();
    let outputs = run_narrative(app, actor, run_id, Default::default(), cancel).await?;
    summary.acts = outputs.len();
    let text = outputs
        .last()
        .map(|o| o.text.trim().to_owned())
        .unwrap_or_default();
    if text.is_empty() {
        return Err(output_error(
            app,
            actor,
            "the final act produced no text to post".into(),
        ));
    }
    check_parts(app, actor, &text)?;
    match app
        .store
        // Queued as `sending`: it goes out now (one write instead of two).
        .enqueue(
            &target,
            &text,
            PostStatus::Sending,
            Some((&actor.name, run_id)),
            app.clock.now(),
        )
        .await?
    {
        Enqueued::New(id) => {
            // Just written: no need to read it back.
            let now = app.clock.now();
            let post = Post {
                id,
                target: target.clone(),
                content: text,
                status: PostStatus::Sending,
                source_actor: Some(actor.name.clone()),
                created_at: now,
                updated_at: now,
                posted_at: None,
                message_ids: Vec::new(),
                parts_sent: 0,
                attempts: 1,
                last_error: None,
            };
            // Only the re-send loop could have it, and only if this run stalled.
            if let Some(_claim) = app.claims.try_claim(id) {
                publish(app, &Sender::of(actor), &post, Attempt::Counted, cancel).await?;
                summary.published.push(id);
            }
        }
        Enqueued::Duplicate(existing) => {
            app.metrics.duplicates_skipped.inc();
            tracing::info!(actor = %actor.name, existing_post = existing, "same text already queued or posted for this target; not posting it again");
            summary.duplicates += 1;
        }
    }
    Ok(summary)
}

/// `generate`: runs the narrative; its final output (a JSON list) becomes pending posts.
async fn generate(
    app: &App,
    actor: &Actor,
    run_id: i64,
    cancel: &CancellationToken,
) -> Result<RunSummary, RunError> {
    let mut summary = RunSummary::default();
    let target = actor.target.key();
    let outputs = run_narrative(app, actor, run_id, Default::default(), cancel).await?;
    summary.acts = outputs.len();
    let posts = generated_posts(outputs.last()).map_err(|m| output_error(app, actor, m))?;
    for text in &posts {
        check_parts(app, actor, text)?;
    }
    for text in posts {
        match app
            .store
            .enqueue(
                &target,
                &text,
                PostStatus::Pending,
                Some((&actor.name, run_id)),
                app.clock.now(),
            )
            .await?
        {
            Enqueued::New(_) => {
                app.metrics.posts_enqueued.inc();
                summary.enqueued += 1;
            }
            Enqueued::Duplicate(_) => {
                app.metrics.duplicates_skipped.inc();
                summary.duplicates += 1;
            }
        }
    }
    Ok(summary)
}

/// `curate`: shows pending posts to the narrative and approves the ids it returns.
async fn curate(
    app: &App,
    actor: &Actor,
    run_id: i64,
    cancel: &CancellationToken,
) -> Result<RunSummary, RunError> {
    let mut summary = RunSummary::default();
    let target = actor.target.key();
    let pending = app
        .store
        .posts(Some(PostStatus::Pending), Some(&target), actor.batch_size)
        .await?;
    if pending.is_empty() {
        tracing::info!(actor = %actor.name, "no pending posts to curate");
        return Ok(summary);
    }
    let shown: Vec<serde_json::Value> = pending
        .iter()
        .map(|p| serde_json::json!({"id": p.id, "text": p.content}))
        .collect();
    let mut builtins = std::collections::BTreeMap::new();
    builtins.insert("pending_posts".to_owned(), Value::from_serialize(&shown));
    let outputs = run_narrative(app, actor, run_id, builtins, cancel).await?;
    summary.acts = outputs.len();
    let ids = approved_ids(outputs.last()).map_err(|m| output_error(app, actor, m))?;
    // Each post is shown to a curator once: what it was shown and did not approve is
    // rejected with the reason, so the next run is shown the next posts, not the same ones.
    let reason = format!("not approved by curator `{}`", actor.name);
    for post in pending.iter().filter(|p| !ids.contains(&p.id)) {
        if app.store.decline(post.id, &reason, app.clock.now()).await? {
            summary.declined += 1;
        }
    }
    for id in ids {
        if !pending.iter().any(|p| p.id == id) {
            tracing::warn!(actor = %actor.name, post = id, "curator approved a post it was not shown; ignored");
            continue;
        }
        app.store
            .transition(
                id,
                &[PostStatus::Pending],
                PostStatus::Approved,
                "approved",
                app.clock.now(),
            )
            .await?;
        summary.approved += 1;
    }
    Ok(summary)
}

/// Refuses a post that would become more than `max_parts_per_post` Discord messages.
fn check_parts(app: &App, actor: &Actor, text: &str) -> Result<(), RunError> {
    let max = app.config.server.max_parts_per_post;
    let parts = split_message(text, MAX_MESSAGE_CHARS).len();
    if parts <= max {
        return Ok(());
    }
    Err(output_error(
        app,
        actor,
        format!(
            "the post would be {parts} Discord messages ({} characters); at most {max} are allowed ([server] max_parts_per_post): ask the model for less, or raise the limit",
            text.chars().count()
        ),
    ))
}

fn output_error(app: &App, actor: &Actor, message: String) -> RunError {
    let narrative = app
        .narrative_of(actor)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    RunError::Output { narrative, message }
}

async fn run_narrative(
    app: &App,
    actor: &Actor,
    run_id: i64,
    builtins: std::collections::BTreeMap<String, Value>,
    cancel: &CancellationToken,
) -> Result<Vec<ActOutput>, RunError> {
    let narrative = app.narrative_of(actor).ok_or_else(|| RunError::Output {
        narrative: String::new(),
        message: format!("actor `{}` has no narrative", actor.name),
    })?;
    let mut builtins = builtins;
    builtins.insert("actor".into(), Value::from(actor.name.clone()));
    builtins.insert("now".into(), Value::from(app.clock.now().to_rfc3339()));
    let options = RunOptions {
        vars: actor.vars.clone(),
        builtins,
        provider_override: None,
        model_override: None,
        default_provider: app.config.server.default_provider.clone(),
    };
    // Outputs are stored as each act completes, so a failed run still shows what it produced.
    let done: Mutex<Vec<ActOutput>> = Mutex::new(Vec::new());
    let result = narrative
        .run(&app.llm, &options, cancel, |out| {
            app.metrics.act_done(&narrative.name, out);
            tracing::info!(actor = %actor.name, act = %out.act, model = %out.model, duration_ms = out.duration.as_millis() as u64, "act done");
            done.lock().unwrap_or_else(|e| e.into_inner()).push(out.clone());
        })
        .await;
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    app.store.record_acts(run_id, &done).await?;
    Ok(result?)
}

/// Who sends a post, and where.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// An actor's name, or the re-send loop's.
    pub name: &'a str,
    pub target: &'a Target,
    pub target_name: &'a str,
}

impl<'a> Sender<'a> {
    /// An actor sending to its target.
    pub fn of(actor: &'a Actor) -> Self {
        Self {
            name: &actor.name,
            target: &actor.target,
            target_name: &actor.target_name,
        }
    }
}

/// Whether a send attempt still has to be recorded before the request goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    New,
    /// The post was queued as `sending`, its first attempt counted.
    Counted,
}

/// Sends every part of `post` not yet accepted, recording each accepted part. The caller holds
/// the post's claim ([`crate::claims::Claims`]).
///
/// # Errors
///
/// When the store fails or Discord does not accept a part (a permanent refusal marks the post
/// `failed`; any other failure leaves it `sending` for the re-send loop).
pub async fn publish(
    app: &App,
    sender: &Sender<'_>,
    post: &Post,
    attempt: Attempt,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    let parts = split_message(&post.content, MAX_MESSAGE_CHARS);
    let span = crate::discord::post_span(post.id, sender.target, parts.len());
    publish_parts(app, sender, post, &parts, attempt, cancel)
        .instrument(span)
        .await
}

async fn publish_parts(
    app: &App,
    sender: &Sender<'_>,
    post: &Post,
    parts: &[String],
    attempt: Attempt,
    cancel: &CancellationToken,
) -> Result<(), RunError> {
    if attempt == Attempt::New {
        app.store.mark_sending(post.id, app.clock.now()).await?;
    }
    let mut ids = post.message_ids.clone();
    for (index, part) in parts.iter().enumerate().skip(post.parts_sent as usize) {
        // At most 25 characters, as Discord requires: salt (6) + id + part index.
        let nonce = format!("{}{}p{}", app.nonce_salt, post.id, index);
        match app.delivery.send(sender.target, part, &nonce, cancel).await {
            Ok(message_id) => {
                ids.push(message_id);
                let sent = (index + 1) as u32;
                if index + 1 == parts.len() {
                    // The last part and "posted" in one write.
                    app.store
                        .record_last_part(post.id, sent, &ids, app.clock.now())
                        .await?;
                } else {
                    app.store
                        .record_part(post.id, sent, &ids, app.clock.now())
                        .await?;
                }
            }
            Err(source) => {
                let reason = crate::error_chain(&source);
                if source.is_permanent() {
                    // Refused for good: set aside, so it never blocks the posts after it.
                    app.store
                        .mark_failed(post.id, &reason, app.clock.now())
                        .await?;
                    app.metrics.posts_failed.inc();
                    tracing::error!(actor = %sender.name, post = post.id, cause = %reason, "discord refused the post; marked failed (bot-server posts retry|reject)");
                } else {
                    app.store
                        .mark_send_failed(post.id, &reason, app.clock.now())
                        .await?;
                }
                return Err(RunError::Delivery {
                    post_id: post.id,
                    source,
                });
            }
        }
    }
    if post.parts_sent as usize >= parts.len() {
        // Every part was accepted before (an older process stopped before recording
        // "posted"): only the status is missing.
        app.store.mark_posted(post.id, app.clock.now()).await?;
    }
    tracing::info!(actor = %sender.name, post = post.id, parts = parts.len(), target = %sender.target_name, "post published");
    Ok(())
}

/// The posts a generator's final act produced: a JSON list of strings or of objects with a
/// `text` (or `content`) field.
fn generated_posts(last: Option<&ActOutput>) -> Result<Vec<String>, String> {
    let last = last.ok_or("the narrative produced no output")?;
    let json = match &last.json {
        Some(j) => j.clone(),
        None => extract_json(&last.text).map_err(|e| {
            format!("a generator's final act must output a JSON list of posts ({e})")
        })?,
    };
    let items = match json {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut o) => match o.remove("posts") {
            Some(serde_json::Value::Array(items)) => items,
            _ => return Err(
                "a generator's final act must output a JSON list of posts (or {\"posts\": [...]})"
                    .into(),
            ),
        },
        other => {
            return Err(format!(
                "a generator's final act must output a JSON list of posts, not {other}"
            ));
        }
    };
    let mut posts = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let text = match item {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(mut o) => {
                match o.remove("text").or_else(|| o.remove("content")) {
                    Some(serde_json::Value::String(s)) => s,
                    _ => return Err(format!("post {i} of the list has no string `text` field")),
                }
            }
            other => {
                return Err(format!(
                    "post {i} of the list is {other}, not a string or an object with `text`"
                ));
            }
        };
        let text = text.trim().to_owned();
        if !text.is_empty() {
            posts.push(text);
        }
    }
    Ok(posts)
}

/// The ids a curator's final act approved: `[1, 2]`, `[{"id": 1}]` or `{"approve": [...]}`.
fn approved_ids(last: Option<&ActOutput>) -> Result<Vec<i64>, String> {
    let last = last.ok_or("the narrative produced no output")?;
    let json = match &last.json {
        Some(j) => j.clone(),
        None => extract_json(&last.text).map_err(|e| {
            format!("a curator's final act must output a JSON list of approved post ids ({e})")
        })?,
    };
    let items = match json {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Object(mut o) => match o
            .remove("approve")
            .or_else(|| o.remove("approved"))
        {
            Some(serde_json::Value::Array(items)) => items,
            _ => return Err(
                "a curator's final act must output a JSON list of ids (or {\"approve\": [...]})"
                    .into(),
            ),
        },
        other => {
            return Err(format!(
                "a curator's final act must output a JSON list of ids, not {other}"
            ));
        }
    };
    items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::Number(n) => {
                n.as_i64().ok_or_else(|| format!("{n} is not a post id"))
            }
            serde_json::Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a post id")),
            serde_json::Value::Object(o) => o
                .get("id")
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| "an approved entry has no integer `id`".to_owned()),
            other => Err(format!("{other} is not a post id")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(text: &str) -> ActOutput {
        ActOutput {
            act: "a".into(),
            text: text.into(),
            json: None,
            provider: "offline".into(),
            request_model: "m".into(),
            model: "m".into(),
            input_tokens: 0,
            output_tokens: 0,
            retries: 0,
            rate_limit_wait: Default::default(),
            duration: Default::default(),
        }
    }

    #[test]
    fn generator_output_shapes() {
        assert_eq!(
            generated_posts(Some(&out(r#"["a", {"text": "b"}, " "]"#))).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(
            generated_posts(Some(&out(r#"{"posts": ["x"]}"#))).unwrap(),
            vec!["x"]
        );
        let e = generated_posts(Some(&out("[1]"))).unwrap_err();
        assert!(e.contains("post 0 of the list is 1"), "{e}");
    }

    #[test]
    fn curator_output_shapes() {
        assert_eq!(
            approved_ids(Some(&out("[1, \"2\", {\"id\": 3}]"))).unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            approved_ids(Some(&out("{\"approve\": [4]}"))).unwrap(),
            vec![4]
        );
        assert!(approved_ids(Some(&out("I approve all"))).is_err());
    }
}
