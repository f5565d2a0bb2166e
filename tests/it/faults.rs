//! Fault injection: Discord answering as it does under load and failure (429 with and without
//! scope headers, 429 from Cloudflare, the documented per-channel and global limits), and what
//! the bot-server must still guarantee: requests paced and bounded per second, no secret in any
//! output, a prompt shutdown.

use crate::support::*;
use bot_server::discord::Delivery;
use bot_server::discord::{DiscordSettings, Target};
use bot_server::fakes::discord::{Fail, FakeDiscord, RATE_LIMIT, RATE_LIMIT_WINDOW};
use bot_server::secret::Secret;
use std::process::Stdio;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn delivery(fake: &FakeDiscord) -> Delivery {
    Delivery::new(
        &DiscordSettings {
            base_url: fake.base_url(),
            timeout_seconds: 30,
        },
        Some(Secret::new(DISCORD_TOKEN)),
    )
    .unwrap()
}

fn channel(id: u64) -> Target {
    Target::Discord { channel_id: id }
}

/// The most requests the fake received within any `window`.
fn max_in_window(fake: &FakeDiscord, window: Duration) -> usize {
    let arrivals = fake.arrivals();
    arrivals
        .iter()
        .map(|&start| {
            arrivals
                .iter()
                .filter(|&&t| t >= start && t < start + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// A global 429 with `retry_after` 5 holds every request of the bot for 5 s, on every channel:
/// two sends racing into a 429 storm make at most 2 requests in any 5 s, and both go out.
#[tokio::test(start_paused = true)]
async fn global_429_holds_every_channel_for_retry_after() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    fake.add_channel(CHANNEL + 1);
    for _ in 0..3 {
        fake.push_failure(Fail::RateLimited {
            retry_after_seconds: 5.0,
            global: true,
        });
    }
    let delivery = delivery(&fake);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let (first, second) = (channel(CHANNEL), channel(CHANNEL + 1));
    let (a, b) = tokio::join!(
        delivery.send(&first, "a", "na", &cancel),
        delivery.send(&second, "b", "nb", &cancel),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(fake.rate_limited_count(), 3);
    assert_eq!(fake.request_count(), 5);
    assert!(
        max_in_window(&fake, Duration::from_secs(5)) <= 2,
        "arrivals: {:?}",
        fake.arrivals()
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

/// A 429 from Cloudflare (only `Retry-After`, no Discord headers) is honoured like a global
/// limit: nothing goes out, on any channel, before it ends.
#[tokio::test(start_paused = true)]
async fn headerless_429_is_honoured() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    fake.add_channel(CHANNEL + 1);
    fake.push_failure(Fail::CloudflareRateLimited {
        retry_after_seconds: 5,
    });
    let delivery = delivery(&fake);
    let cancel = CancellationToken::new();
    delivery
        .send(&channel(CHANNEL), "a", "na", &cancel)
        .await
        .unwrap();
    delivery
        .send(&channel(CHANNEL + 1), "b", "nb", &cancel)
        .await
        .unwrap();
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 3);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(5));
    assert_eq!(fake.messages().len(), 2);
}

/// 200 senders posting to 10 channels for 60 s against Discord's documented limits (5 per 5 s
/// per channel, headers on every answer, scope only on 429s): no 429 at all, delivery within
/// 5 % of the limit, and each sender's posts appear in its channel in order.
#[tokio::test(start_paused = true)]
async fn steady_load_is_paced_from_headers_without_429s() {
    const CHANNELS: u64 = 10;
    const SENDERS: u64 = 200;
    let run_for = Duration::from_secs(60);
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    for c in 0..CHANNELS {
        fake.add_channel(CHANNEL + c);
    }
    let delivery = delivery(&fake);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let delivery = delivery.clone();
        tasks.spawn(async move {
            let cancel = CancellationToken::new();
            let target = channel(CHANNEL + sender % CHANNELS);
            let mut n = 0;
            while started.elapsed() < run_for {
                let text = format!("sender {sender} post {n}");
                delivery
                    .send(&target, &text, &format!("s{sender}n{n}"), &cancel)
                    .await
                    .unwrap();
                n += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(fake.rate_limited_count(), 0, "429s under a steady load");
    let limit =
        (run_for.as_secs() / RATE_LIMIT_WINDOW.as_secs()) * u64::from(RATE_LIMIT) * CHANNELS;
    let in_time = fake
        .arrivals()
        .iter()
        .filter(|&&t| t < started + run_for)
        .count() as u64;
    assert!(
        in_time * 100 >= limit * 95 && in_time <= limit,
        "{in_time} messages in {run_for:?}, the limit allows {limit}"
    );
    for c in 0..CHANNELS {
        let mut last: std::collections::HashMap<u64, i64> = Default::default();
        for message in fake.messages_in(CHANNEL + c) {
            let words: Vec<&str> = message.content.split(' ').collect();
            let (sender, n): (u64, i64) = (words[1].parse().unwrap(), words[3].parse().unwrap());
            let previous = last.insert(sender, n).unwrap_or(-1);
            assert_eq!(n, previous + 1, "sender {sender}'s posts out of order");
        }
    }
}

/// 200 senders over 100 channels, 3 posts each, against the fake's global limit (50 per
/// second): the global window never lets more than 50 requests through in a second, so
/// Discord answers no global 429 (the burst-then-rate pacer drew 154-163 in 70 s with 200
/// actors, about 99 requests in its busiest second).
#[tokio::test(start_paused = true)]
async fn many_channels_draw_no_global_429() {
    const CHANNELS: u64 = 100;
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    for c in 0..CHANNELS {
        fake.add_channel(CHANNEL + c);
    }
    let delivery = delivery(&fake);
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..200u64 {
        let delivery = delivery.clone();
        tasks.spawn(async move {
            let cancel = CancellationToken::new();
            let target = channel(CHANNEL + sender % CHANNELS);
            for n in 0..3 {
                delivery
                    .send(
                        &target,
                        &format!("s{sender} n{n}"),
                        &format!("s{sender}n{n}"),
                        &cancel,
                    )
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(fake.messages().len(), 600);
    let busiest = max_in_window(&fake, Duration::from_secs(1));
    assert_eq!(
        fake.rate_limited_count(),
        0,
        "429s; busiest second: {busiest}"
    );
    assert!(busiest <= 50, "{busiest} requests in one second");
}

/// Posts queued for one channel go out in their order even when the first is answered 429: it
/// keeps its place and is sent again before the others (it used to go behind them).
#[tokio::test(start_paused = true)]
async fn a_post_answered_429_keeps_its_place() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    fake.push_failure(Fail::RateLimited {
        retry_after_seconds: 2.0,
        global: false,
    });
    let delivery = delivery(&fake);
    let mut tasks = Vec::new();
    for n in 0..5 {
        let delivery = delivery.clone();
        tasks.push(tokio::spawn(async move {
            let cancel = CancellationToken::new();
            delivery
                .send(
                    &channel(CHANNEL),
                    &format!("post {n}"),
                    &format!("n{n}"),
                    &cancel,
                )
                .await
                .unwrap();
        }));
        // Each queues for the channel before the next is started, all before the first
        // answer comes back.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let order: Vec<String> = fake
        .messages_in(CHANNEL)
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        order,
        (0..5).map(|n| format!("post {n}")).collect::<Vec<_>>()
    );
}

/// A global 429 asking for 120 s is waited out in full by every channel: no request goes out
/// before 120 s (the wait used to be cut at 60 s, so another channel sent at +60 s).
#[tokio::test(start_paused = true)]
async fn a_long_retry_after_is_honoured_in_full() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    fake.add_channel(CHANNEL + 1);
    fake.push_failure(Fail::RateLimited {
        retry_after_seconds: 120.0,
        global: true,
    });
    let delivery = delivery(&fake);
    let send = |target: Target, text: &'static str| {
        let delivery = delivery.clone();
        tokio::spawn(async move {
            let cancel = CancellationToken::new();
            delivery.send(&target, text, text, &cancel).await
        })
    };
    let first = send(channel(CHANNEL), "late");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.rate_limited_count(), 1);
    let second = send(channel(CHANNEL + 1), "other");
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 3, "one 429, then the two messages");
    for at in &arrivals[1..] {
        assert!(
            *at - arrivals[0] >= Duration::from_secs(120),
            "a request {:?} after the 429",
            *at - arrivals[0]
        );
    }
}

/// 429s without any hint (no body, no Retry-After, no headers) are answered with waits of 1,
/// 2, 4, 8 s: five requests take at least 15 s (they came every second before).
#[tokio::test(start_paused = true)]
async fn hintless_429s_back_off_exponentially() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    for _ in 0..10 {
        fake.push_failure(Fail::BareRateLimited);
    }
    let delivery = delivery(&fake);
    let cancel = CancellationToken::new();
    let err = delivery
        .send(&channel(CHANNEL), "x", "n1", &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind_label(), "rate_limited");
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 5, "the first try and 4 retries");
    let gaps: Vec<u64> = arrivals
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps, vec![1, 2, 4, 8]);
}

/// A 200 whose body cannot be read means Discord took the message: on a webhook (no nonce)
/// it is "may have posted", never sent again (it used to be a plain decode failure, and the
/// post was sent again: a second message); on a channel the resend carries the nonce, and
/// Discord answers with the message it holds.
#[tokio::test(start_paused = true)]
async fn an_unreadable_200_may_have_posted() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    let url = fake.add_webhook(4242, "hook-token-SECRET");
    let delivery = delivery(&fake);
    let cancel = CancellationToken::new();
    fake.push_failure(Fail::GarbledAfterCreate);
    let hook = Target::Webhook {
        url: Secret::new(url),
    };
    let err = delivery
        .send(&hook, "once", "n1", &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind_label(), "uncertain", "{err}");
    assert_eq!(fake.messages_in(4242).len(), 1);
    assert_eq!(fake.request_count(), 1);
    fake.push_failure(Fail::GarbledAfterCreate);
    let id = delivery
        .send(&channel(CHANNEL), "on a channel", "n2", &cancel)
        .await
        .unwrap();
    let messages = fake.messages_in(CHANNEL);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id.to_string(), id);
}

/// A send waiting out a rate limit gives up when the server shuts down, without sending.
#[tokio::test(start_paused = true)]
async fn waiting_send_stops_at_cancel() {
    let fake = FakeDiscord::start(DISCORD_TOKEN).await;
    fake.add_channel(CHANNEL);
    fake.push_failure(Fail::RateLimited {
        retry_after_seconds: 30.0,
        global: true,
    });
    let delivery = delivery(&fake);
    let cancel = CancellationToken::new();
    let target = channel(CHANNEL);
    let send = delivery.send(&target, "a", "na", &cancel);
    let stop = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        cancel.cancel();
    };
    let (result, ()) = tokio::join!(send, stop);
    assert!(result.is_err());
    assert_eq!(fake.request_count(), 1);
    assert!(fake.messages().is_empty());
}

/// The real binary in a global 429 storm (`Retry-After` 5 on every answer): at most 2
/// requests in any 5 s, and SIGTERM ends it within its 2 s grace (twilight's internal retries
/// made 600 requests in 11 s and took 37 s to stop).
#[tokio::test]
async fn binary_in_a_429_storm_is_bounded_and_stops_within_grace() {
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    for _ in 0..50 {
        env.discord.push_failure(Fail::RateLimited {
            retry_after_seconds: 5.0,
            global: true,
        });
    }
    env.config("shutdown_grace_seconds = 2", ONCE_ACTOR);
    let mut child = env.spawn_serve();
    eventually("the first request", Duration::from_secs(30), || async {
        env.discord.request_count() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(child.id().unwrap(), "-TERM");
    let stopping = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .unwrap();
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    // The grace plus the trace flush bound (5 s) is the most a stop may take.
    assert!(took < Duration::from_secs(7), "stopping took {took:?}");
    assert!(
        max_in_window(&env.discord, Duration::from_millis(4900)) <= 2,
        "arrivals: {:?}",
        env.discord.arrivals()
    );
    assert!(env.discord.messages().is_empty());
}

/// A webhook's token never appears in any output, with the most verbose logs, JSON logs and
/// spans printed to stdout, through a 429, a 401 (re-sent by the loop) and a success.
#[tokio::test]
async fn webhook_token_never_appears_in_output() {
    const TOKEN: &str = "hook-token-SECRET-9f8e7d";
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    let url = env.discord.add_webhook(88, TOKEN);
    env.discord.push_failure(Fail::RateLimited {
        retry_after_seconds: 0.2,
        global: false,
    });
    env.discord.push_failure(Fail::Unauthorized);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.config(
        &format!("admin_listen = \"127.0.0.1:{port}\""),
        "[targets.hook]\ntype = \"webhook\"\nurl = \"${HOOK_URL}\"\n\n[[actors]]\nname = \"once\"\nnarrative = \"one.toml\"\ntarget = \"hook\"\n[actors.schedule]\ntype = \"Immediate\"\n",
    );
    let child = env
        .command(&["serve"])
        .env("HOOK_URL", &url)
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", "json")
        .env("OTEL_EXPORTER", "stdout")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("posted", Duration::from_secs(30), || async {
        env.discord.messages_in(88).len() == 1
    })
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let readyz = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    signal(child.id().unwrap(), "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(env.discord.rate_limited_count(), 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("discord rate limited a request"),
        "{stderr}"
    );
    for (name, text) in [
        ("stdout", &*stdout),
        ("stderr", &*stderr),
        ("/metrics", &metrics),
        ("/readyz", &readyz),
    ] {
        assert!(!text.contains(TOKEN), "the webhook token is in {name}");
    }
    let db = std::fs::read(env.path("state/bot-server.db")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&db).contains(TOKEN),
        "the webhook token is in the state store"
    );
}

/// A post Discord refuses for good (400 AutoMod) is set aside as `failed` with the reason and
/// counted; the actor's later runs post as usual instead of failing on it; an operator can
/// retry it (it goes out with the next run) or reject a failed post.
#[tokio::test(start_paused = true)]
async fn refused_post_is_set_aside_and_never_blocks_later_posts() {
    use bot_server::commands::{Decision, posts_decide};
    use bot_server::store::PostStatus;
    let env = TestEnv::new().await;
    env.write(
        "one.toml",
        "[narrative]\nname = \"one\"\n[acts]\nonly = \"news at {{ now }}\"\n",
    );
    env.discord.push_failure(Fail::BlockedByAutoMod);
    let config = env.config(
        "",
        "[[actors]]\nname = \"poster\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 60\n",
    );
    let running = Serving::start(env.app(&config).await).await;
    let app = running.app.clone();
    eventually("post 1 failed", Duration::from_secs(60), || async {
        has_status(&app, 1, PostStatus::Failed).await
    })
    .await;
    let failed = app.store.post(1).await.unwrap().unwrap();
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Message was blocked by AutoMod")),
        "{failed:?}"
    );
    assert_eq!(app.metrics.posts_failed.get(), 1);
    eventually(
        "two later runs posted",
        Duration::from_secs(180),
        || async { env.discord.messages_in(CHANNEL).len() == 2 },
    )
    .await;
    assert_eq!(
        app.store.post(1).await.unwrap().unwrap().status,
        PostStatus::Failed,
        "a failed post is not sent again by itself"
    );

    let mut out = Vec::new();
    posts_decide(&app.store, &[1], Decision::Retry, &mut out)
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "post 1 queued for sending\n");
    eventually(
        "the retried post went out",
        Duration::from_secs(120),
        || async { has_status(&app, 1, PostStatus::Posted).await },
    )
    .await;

    env.discord.push_failure(Fail::BlockedByAutoMod);
    let next = app.store.posts(None, None, 100).await.unwrap().len() as i64 + 1;
    eventually("the next post failed", Duration::from_secs(120), || async {
        has_status(&app, next, PostStatus::Failed).await
    })
    .await;
    let mut out = Vec::new();
    posts_decide(&app.store, &[next], Decision::Reject, &mut out)
        .await
        .unwrap();
    assert_eq!(
        app.store.post(next).await.unwrap().unwrap().status,
        PostStatus::Rejected
    );
    running.stop().await;
}

/// Posts refused for their content (AutoMod) say nothing about the actor's health: more of
/// them in a row than `max_consecutive_failures` leave its circuit closed and its runs on
/// schedule (before, five refusals opened the circuit and paused the actor for 300 s). A
/// target that refuses the bot (403) does count, and opens the circuit.
#[tokio::test(start_paused = true)]
async fn refused_posts_do_not_open_the_circuit_but_a_refusing_target_does() {
    use bot_server::actor_state::Circuit;
    let env = TestEnv::new().await;
    env.write(
        "one.toml",
        "[narrative]\nname = \"one\"\n[acts]\nonly = \"news at {{ now }}\"\n",
    );
    for _ in 0..6 {
        env.discord.push_failure(Fail::BlockedByAutoMod);
    }
    let config = env.config(
        "max_consecutive_failures = 5\ncircuit_cooldown_seconds = 300",
        "[[actors]]\nname = \"poster\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 10\n",
    );
    let running = Serving::start(env.app(&config).await).await;
    let app = running.app.clone();
    // Six refused posts, then the seventh run posts: 10 s apart, no pause.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let states = app.store.actor_states().await.unwrap();
    assert_eq!(states[0].circuit, Circuit::Closed, "{states:?}");
    assert_eq!(states[0].consecutive_failures, 0, "{states:?}");
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
    let failed = app
        .store
        .posts(Some(bot_server::store::PostStatus::Failed), None, 100)
        .await
        .unwrap();
    assert_eq!(failed.len(), 6);
    // The channel now refuses the bot: that repeats on every run, so it counts.
    for _ in 0..5 {
        env.discord.push_failure(Fail::Status(403));
    }
    tokio::time::sleep(Duration::from_secs(55)).await;
    let states = app.store.actor_states().await.unwrap();
    assert_eq!(states[0].circuit, Circuit::Open, "{states:?}");
    running.stop().await;
}

/// The server dies after Discord accepted a message and before it was recorded; on restart the
/// re-send loop sends it again at once, inside Discord's nonce window (the actor's next fire is
/// an hour away, long past the window): one message, and the post records its id. Then, past
/// the window, nothing is sent again.
#[tokio::test]
async fn crash_after_accept_is_resent_at_start_up_inside_the_nonce_window() {
    use bot_server::fakes::discord::NONCE_WINDOW;
    use bot_server::store::PostStatus;
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.discord.push_failure(Fail::HangAfterCreate);
    let config = env.config(
        "",
        "[[actors]]\nname = \"hourly\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 3600\n",
    );

    // First life, on a runtime of its own: dropping that runtime is the crash (every task
    // stops where it is, nothing more is written).
    let (crash, crashed) = tokio::sync::oneshot::channel::<()>();
    let first_life = tokio::task::spawn_blocking({
        let config = config.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _running = Serving::start(app_for(&config).await).await;
                let _ = crashed.await;
            });
            // Every task is dropped where it stands (no more requests, no more writes of
            // its own); waiting for that frees the store's serving lock for the second life.
            runtime.shutdown_timeout(Duration::from_secs(10));
        }
    });
    eventually(
        "Discord accepted the message",
        Duration::from_secs(30),
        || async { env.discord.messages_in(CHANNEL).len() == 1 },
    )
    .await;
    crash.send(()).unwrap();
    first_life.await.unwrap();

    // Second life, on the paused clock.
    tokio::time::pause();
    let running = Serving::start(env.app(&config).await).await;
    let app = running.app.clone();
    eventually(
        "the post is recorded as posted",
        Duration::from_secs(60),
        || async { has_status(&app, 1, PostStatus::Posted).await },
    )
    .await;
    tokio::time::sleep(NONCE_WINDOW * 2).await;
    let messages = env.discord.messages_in(CHANNEL);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let post = app.store.post(1).await.unwrap().unwrap();
    assert_eq!(post.message_ids, vec![messages[0].id.to_string()]);
    assert!(env.discord.request_count() >= 2, "the re-send happened");
    running.stop().await;
}

/// A `post` actor and a `publish` actor on one webhook, with Discord slow to answer: each post
/// goes out once (a post in flight is claimed by one sender; a publisher takes approved posts,
/// never another sender's `sending` one).
#[tokio::test(start_paused = true)]
async fn post_and_publish_actors_on_one_webhook_send_each_post_once() {
    let env = TestEnv::new().await;
    env.llm.set_responder(pipeline_responder);
    env.write(
        "one.toml",
        "[narrative]\nname = \"one\"\n[acts]\nonly = \"news at {{ now }}\"\n",
    );
    let url = env.discord.add_webhook(99, "hook-token");
    for _ in 0..8 {
        env.discord.push_failure(Fail::Slow(Duration::from_secs(3)));
    }
    let config = env.config(
        "",
        &format!(
            r#"
[targets.hook]
type = "webhook"
url = "{url}"

[[actors]]
name = "poster"
narrative = "one.toml"
target = "hook"
[actors.schedule]
type = "Interval"
seconds = 10

[[actors]]
name = "publisher"
action = "publish"
target = "hook"
[actors.schedule]
type = "Interval"
seconds = 1
"#
        ),
    );
    let running = Serving::start(env.app(&config).await).await;
    eventually("4 posts", Duration::from_secs(120), || async {
        env.discord.messages_in(99).len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let store = running.stop().await;
    let messages = env.discord.messages_in(99);
    let mut contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    let sent = contents.len();
    contents.sort_unstable();
    contents.dedup();
    assert_eq!(contents.len(), sent, "a post went out twice: {messages:?}");
    let posts = store.posts(None, None, 100).await.unwrap();
    assert_eq!(posts.len(), sent);
}

/// A model answering 1 MB does not become hundreds of Discord messages: the run fails naming
/// the limit (`max_parts_per_post`, default 4), nothing is queued or sent.
#[tokio::test(start_paused = true)]
async fn huge_answer_fails_the_run_instead_of_flooding_the_channel() {
    use bot_server::fakes::llm::Reply;
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.llm.push(Reply::Text("word ".repeat(200_000)));
    let config = env.config("", ONCE_ACTOR);
    let running = Serving::start(env.app(&config).await).await;
    let app = running.app.clone();
    eventually("the run ended", Duration::from_secs(60), || async {
        app.store
            .recent_runs(Some("once"), 1)
            .await
            .unwrap()
            .first()
            .is_some_and(|r| r.finished_at.is_some())
    })
    .await;
    let run = app
        .store
        .recent_runs(Some("once"), 1)
        .await
        .unwrap()
        .remove(0);
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("the post would be 500 Discord messages (999999 characters); at most 4 are allowed ([server] max_parts_per_post)"),
        "{error}"
    );
    assert!(app.store.posts(None, None, 10).await.unwrap().is_empty());
    assert!(env.discord.messages().is_empty());
    running.stop().await;
}

/// A provider answer over `max_response_bytes` is not read and not retried: one request, and
/// an error naming the limit.
#[tokio::test]
async fn answer_over_max_response_bytes_is_refused_without_retry() {
    use bot_server::fakes::llm::Reply;
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    env.llm.push(Reply::Text("x".repeat(20_000)));
    let config = env.config("", "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "max_retries = 2",
        "max_retries = 2\nmax_response_bytes = 10000",
    );
    std::fs::write(&config, text).unwrap();
    let o = env.command(&["run", "one.toml"]).output().await.unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(
            "provider `gemini` sent a response over 10000 bytes (max_response_bytes): not read"
        ),
        "{stderr}"
    );
    assert_eq!(env.llm.request_count(), 1);
}

/// How a failure mode must end for a post.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ends {
    /// Sent again until Discord accepts it: posted, once.
    Posted,
    /// Set aside for an operator (`failed`, with a reason), never sent twice.
    SetAside,
}

/// Every Discord failure mode, on a channel and on a webhook, injected into the first send of
/// three posts: no post is sent twice, none is lost (each is posted or set aside as `failed`
/// with a reason), none is left `sending`, requests stay bounded per second, and no token
/// reaches the store. A webhook has no nonce, so a failure that may come after Discord
/// accepted (5xx, hang, reset after the request went out) sets the post aside instead of
/// sending it again; a channel message is re-sent with its nonce.
#[tokio::test(start_paused = true)]
async fn every_discord_failure_mode_keeps_the_delivery_guarantees() {
    use Ends::*;
    use bot_server::store::PostStatus;
    let global = Fail::RateLimited {
        retry_after_seconds: 2.0,
        global: true,
    };
    let route = Fail::RateLimited {
        retry_after_seconds: 2.0,
        global: false,
    };
    let modes: Vec<(&str, Fail, Ends, Ends)> = vec![
        ("429 global", global, Posted, Posted),
        ("429 route", route, Posted, Posted),
        (
            "429 from Cloudflare",
            Fail::CloudflareRateLimited {
                retry_after_seconds: 2,
            },
            Posted,
            Posted,
        ),
        ("429 without a hint", Fail::BareRateLimited, Posted, Posted),
        (
            "200 with an unreadable body",
            Fail::GarbledAfterCreate,
            Posted,
            SetAside,
        ),
        ("400 AutoMod", Fail::BlockedByAutoMod, SetAside, SetAside),
        ("401", Fail::Unauthorized, Posted, Posted),
        ("403", Fail::Status(403), SetAside, SetAside),
        ("404", Fail::Status(404), SetAside, SetAside),
        ("413", Fail::Status(413), SetAside, SetAside),
        ("500 before accept", Fail::Status(500), Posted, SetAside),
        (
            "502 after accept",
            Fail::StatusAfterCreate(502),
            Posted,
            SetAside,
        ),
        ("hang before accept", Fail::Hang, Posted, SetAside),
        ("hang after accept", Fail::HangAfterCreate, Posted, SetAside),
        (
            "reset before accept",
            Fail::ResetBeforeCreate,
            Posted,
            SetAside,
        ),
        (
            "reset after accept",
            Fail::ResetAfterCreate,
            Posted,
            SetAside,
        ),
    ];
    const WEBHOOK: u64 = 4242;
    const HOOK_TOKEN: &str = "hook-SECRET-token-77";
    for (name, fail, on_channel, on_webhook) in modes {
        for webhook in [false, true] {
            let env = TestEnv::new().await;
            env.write(
                "one.toml",
                "[narrative]\nname = \"one\"\n[acts]\nonly = \"news at {{ now }}\"\n",
            );
            let url = env.discord.add_webhook(WEBHOOK, HOOK_TOKEN);
            let (target, expected, inbox) = if webhook {
                ("hook", on_webhook, WEBHOOK)
            } else {
                ("chan", on_channel, CHANNEL)
            };
            env.discord.push_failure(fail.clone());
            let config = env.config(
                "",
                &format!(
                    "[targets.hook]\ntype = \"webhook\"\nurl = \"{url}\"\n\n[[actors]]\nname = \"poster\"\nnarrative = \"one.toml\"\ntarget = \"{target}\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 60\n"
                ),
            );
            let case = format!("{name} on {target}");
            let running = Serving::start(env.app(&config).await).await;
            // Three runs, then time for the re-send loop's backoff to play out.
            tokio::time::sleep(Duration::from_secs(60 * 3 + 30)).await;
            let store = running.stop().await;
            let posts = store.posts(None, None, 100).await.unwrap();
            assert!(posts.len() >= 3, "{case}: {} posts", posts.len());
            let messages = env.discord.messages_in(inbox);
            for post in &posts {
                let copies = messages
                    .iter()
                    .filter(|m| m.content == post.content)
                    .count();
                assert!(copies <= 1, "{case}: post {} sent {copies} times", post.id);
                match post.status {
                    PostStatus::Posted => {
                        assert_eq!(
                            copies, 1,
                            "{case}: post {} posted but not in Discord",
                            post.id
                        )
                    }
                    PostStatus::Failed => assert!(
                        post.last_error.as_deref().is_some_and(|e| !e.is_empty()),
                        "{case}: post {} failed without a reason",
                        post.id
                    ),
                    other => panic!("{case}: post {} left {other:?}", post.id),
                }
                for secret in [HOOK_TOKEN, DISCORD_TOKEN] {
                    assert!(
                        !post
                            .last_error
                            .as_deref()
                            .unwrap_or_default()
                            .contains(secret),
                        "{case}: a token in post {}'s error",
                        post.id
                    );
                }
            }
            let first = &posts[0];
            let wanted = match expected {
                Posted => PostStatus::Posted,
                SetAside => PostStatus::Failed,
            };
            assert_eq!(first.status, wanted, "{case}: {first:?}");
            if let Some(error) = first.last_error.as_deref().filter(|_| expected == SetAside) {
                // The reason names the target it is about (a webhook's 403 once said
                // "channel 0").
                let named = if webhook {
                    format!("webhook {WEBHOOK}")
                } else {
                    format!("channel {CHANNEL}")
                };
                assert!(error.contains(&named), "{case}: {error}");
                assert!(!error.contains("channel 0"), "{case}: {error}");
            }
            assert!(
                posts[1..].iter().all(|p| p.status == PostStatus::Posted),
                "{case}: later posts held up: {posts:?}"
            );
            let runs = store.recent_runs(Some("poster"), 10).await.unwrap();
            for run in runs {
                for secret in [HOOK_TOKEN, DISCORD_TOKEN] {
                    assert!(
                        !run.error.as_deref().unwrap_or_default().contains(secret),
                        "{case}: a token in a run's error"
                    );
                }
            }
            let busiest = max_in_window(&env.discord, Duration::from_secs(1));
            assert!(busiest <= 6, "{case}: {busiest} requests in one second");
        }
    }
}

/// Every provider failure mode (429 with and without a retry delay, 500, 503, 529, quota,
/// 401, a hang past the timeout, an undecodable body), answered to every call: each run fails
/// and is recorded with the cause, nothing is queued or sent, a run makes at most
/// 1 + max_retries calls, and the key appears in no error.
#[tokio::test(start_paused = true)]
async fn every_provider_failure_mode_fails_runs_cleanly() {
    use bot_server::fakes::llm::Reply;
    let modes: Vec<(&str, Reply)> = vec![
        (
            "429 with delay",
            Reply::RateLimited {
                retry_after_seconds: Some(3),
            },
        ),
        (
            "429 without delay",
            Reply::RateLimited {
                retry_after_seconds: None,
            },
        ),
        ("500", Reply::ServerError(500)),
        ("503", Reply::ServerError(503)),
        ("529", Reply::ServerError(529)),
        ("quota", Reply::QuotaExhausted),
        (
            "401",
            Reply::Raw {
                status: 401,
                headers: vec![],
                body: format!(
                    r#"{{"error": {{"code": 401, "message": "API key {GEMINI_KEY} not valid", "status": "UNAUTHENTICATED"}}}}"#
                ),
            },
        ),
        ("hang", Reply::Delay(Duration::from_secs(600))),
        (
            "garbage",
            Reply::Raw {
                status: 200,
                headers: vec![],
                body: "<html>oops</html>".into(),
            },
        ),
    ];
    for (name, reply) in modes {
        let env = TestEnv::new().await;
        env.write("one.toml", ONE_ACT);
        for _ in 0..20 {
            env.llm.push(reply.clone());
        }
        let config = env.config(
            "",
            "[[actors]]\nname = \"poster\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 300\n",
        );
        let running = Serving::start(env.app(&config).await).await;
        let app = running.app.clone();
        eventually(name, Duration::from_secs(600), || async {
            app.store
                .recent_runs(Some("poster"), 1)
                .await
                .unwrap()
                .first()
                .is_some_and(|r| r.finished_at.is_some())
        })
        .await;
        let store = running.stop().await;
        let run = store
            .recent_runs(Some("poster"), 1)
            .await
            .unwrap()
            .remove(0);
        let error = run.error.clone().unwrap_or_default();
        assert!(error.contains("gemini"), "{name}: {error}");
        assert!(
            !error.contains(GEMINI_KEY),
            "{name}: the key in the run's error"
        );
        assert!(
            store.posts(None, None, 10).await.unwrap().is_empty(),
            "{name}"
        );
        assert!(env.discord.messages().is_empty(), "{name}");
        // max_retries = 2 in the test config.
        assert!(
            env.llm.request_count() <= 3,
            "{name}: {} calls",
            env.llm.request_count()
        );
    }
}

/// A post left `sending` for a target no actor uses any more is set aside as `failed` once,
/// with a reason naming the target, instead of being looked at again every second.
#[tokio::test(start_paused = true)]
async fn unsent_post_for_a_removed_target_is_set_aside() {
    use bot_server::store::{Enqueued, PostStatus, Store};
    let env = TestEnv::new().await;
    env.write("one.toml", ONE_ACT);
    let config = env.config("", ONCE_ACTOR);
    {
        let store = Store::open(&env.path("state"), None).await.unwrap();
        let queued = store
            .enqueue(
                "discord:424242",
                "for a channel that is gone",
                PostStatus::Sending,
                None,
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(queued, Enqueued::New(1));
        store.close().await;
    }
    let running = Serving::start(env.app(&config).await).await;
    let app = running.app.clone();
    eventually("set aside", Duration::from_secs(30), || async {
        has_status(&app, 1, PostStatus::Failed).await
    })
    .await;
    let post = app.store.post(1).await.unwrap().unwrap();
    assert!(
        post.last_error
            .as_deref()
            .is_some_and(|e| e.contains("target discord:424242 is no longer used by any actor")),
        "{post:?}"
    );
    assert_eq!(app.metrics.posts_failed.get(), 1);
    drop(app);
    running.stop().await;
}

/// Whether post `id` exists and has `status`.
async fn has_status(
    app: &bot_server::app::App,
    id: i64,
    status: bot_server::store::PostStatus,
) -> bool {
    app.store
        .post(id)
        .await
        .unwrap()
        .is_some_and(|p| p.status == status)
}
