//! Traces and logs of the real binary: OTLP export (gRPC and HTTP/protobuf) to the in-process
//! stand-in receiver ([`FakeOtlp`], not Jaeger), the span tree of one actor run, error status,
//! a collector that is down or late, the flush at SIGTERM, trace ids in JSON logs, TLS to the
//! collector (`OTEL_EXPORTER_OTLP_CERTIFICATE`), the headers sent to it
//! (`OTEL_EXPORTER_OTLP_HEADERS` and its `_FILE`), and the standard variables
//! (`OTEL_TRACES_EXPORTER`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_SAMPLER`).

use crate::support::*;
use crate::tls::{Pki, TlsFront};
use bot_server::fakes::discord::Fail;
use bot_server::fakes::llm::Reply;
use bot_server::fakes::otlp::{FakeOtlp, ReceivedSpan, StatusCode};
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(30);

/// `serve` with OTLP export to `endpoint` and a batch delay of a minute, so that spans reach
/// the receiver only through the flush at shutdown; `extra` variables last. Stdout is
/// discarded; stderr goes to `stderr.log` in the test directory.
fn serve_command(env: &TestEnv, endpoint: &str, extra: &[(&str, &str)]) -> Command {
    let log = std::fs::File::create(env.path("stderr.log")).unwrap();
    let mut cmd = env.command(&["serve"]);
    cmd.env("OTEL_TRACES_EXPORTER", "otlp")
        .env_remove("OTEL_EXPORTER")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_CERTIFICATE")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS_FILE")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn serve(env: &TestEnv, endpoint: &str, extra: &[(&str, &str)]) -> Child {
    serve_command(env, endpoint, extra).spawn().unwrap()
}

fn stderr_of(env: &TestEnv) -> String {
    std::fs::read_to_string(env.path("stderr.log")).unwrap_or_default()
}

fn sigterm(child: &Child) {
    signal(child.id().expect("still running"), "-TERM");
}

/// SIGTERMs `child` and waits for it to exit 0 within `limit`; returns how long that took.
async fn stop(env: &TestEnv, mut child: Child, limit: Duration) -> Duration {
    sigterm(&child);
    let started = Instant::now();
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within {limit:?}; stderr:\n{}", stderr_of(env)))
        .unwrap();
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        stderr_of(env)
    );
    started.elapsed()
}

async fn wait_for_post(env: &TestEnv, count: usize) {
    let deadline = Instant::now() + LIMIT;
    while env.discord.messages_in(CHANNEL).len() < count {
        assert!(
            Instant::now() < deadline,
            "not {count} message(s) in the channel within {LIMIT:?}; stderr:\n{}",
            stderr_of(env)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_log(env: &TestEnv, needle: &str) {
    let deadline = Instant::now() + LIMIT;
    while !stderr_of(env).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in the logs within {LIMIT:?}:\n{}",
            stderr_of(env)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The spans of the (single) trace rooted at an `actor.run` span, after the process exited.
async fn run_trace(receiver: &FakeOtlp) -> (ReceivedSpan, Vec<ReceivedSpan>) {
    let has_root = |spans: &[ReceivedSpan]| spans.iter().any(|s| s.name == "actor.run");
    let spans = receiver
        .wait_for(has_root, Duration::from_secs(5))
        .await
        .unwrap_or_else(|spans| panic!("no actor.run span arrived; got {spans:#?}"));
    let roots: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "actor.run").collect();
    assert_eq!(roots.len(), 1, "one run, one root span: {roots:#?}");
    let root = roots[0].clone();
    assert!(root.is_root(), "actor.run has no parent: {root:#?}");
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .cloned()
        .collect();
    (root, trace)
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The LLM calls: GenAI `chat` spans, each named `chat {model}` as the conventions ask.
fn chats(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    let calls: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.attr("gen_ai.operation.name") == Some("chat"))
        .collect();
    for call in &calls {
        let model = call.attr("gen_ai.request.model").unwrap_or_default();
        assert_eq!(call.name, format!("chat {model}"), "{call:#?}");
    }
    calls
}

fn int_attr(span: &ReceivedSpan, key: &str) -> i64 {
    span.attr(key)
        .unwrap_or_else(|| panic!("{} has no `{key}`: {span:#?}", span.name))
        .parse()
        .unwrap_or_else(|_| panic!("{} `{key}` is not an integer: {span:#?}", span.name))
}

/// Checks the span tree of one successful `tip` run: root, three acts under it, one LLM call
/// under each act with the GenAI attributes, the Discord post and the store operations, all
/// in one trace, no prompt text anywhere, and the resource attributes.
fn assert_tip_trace(
    all: &[ReceivedSpan],
    root: &ReceivedSpan,
    trace: &[ReceivedSpan],
    service: &str,
) {
    assert_eq!(root.attr("actor"), Some("tip"), "{root:#?}");
    assert!(root.attr("run.id").is_some(), "{root:#?}");
    assert_eq!(root.attr("outcome"), Some("success"), "{root:#?}");
    assert_ne!(root.status_code, StatusCode::Error, "{root:#?}");

    // Every span of the trace hangs off another span of the trace, up to the root.
    let ids: BTreeSet<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for span in trace.iter().filter(|s| s.span_id != root.span_id) {
        let parent = span.parent_span_id.as_deref();
        assert!(
            parent.is_some_and(|p| ids.contains(p)),
            "{} is not in the run's tree: {span:#?}",
            span.name
        );
    }
    // The run's spans are all in that trace.
    for name in ["narrative.act", "discord.post", "discord.message"] {
        assert_eq!(
            named(all, name).len(),
            named(trace, name).len(),
            "every {name} span belongs to the run's trace"
        );
    }
    assert_eq!(
        chats(all).len(),
        chats(trace).len(),
        "every chat span belongs to the run's trace"
    );

    let acts = named(trace, "narrative.act");
    assert_eq!(acts.len(), 3, "{acts:#?}");
    let mut act_names: Vec<&str> = acts.iter().filter_map(|a| a.attr("act")).collect();
    act_names.sort_unstable();
    assert_eq!(act_names, ["critique", "draft", "final"]);
    for act in &acts {
        assert_eq!(act.parent_span_id.as_deref(), Some(root.span_id.as_str()));
        assert_eq!(act.attr("narrative"), Some("tip"), "{act:#?}");
        let calls: Vec<&ReceivedSpan> = chats(trace)
            .into_iter()
            .filter(|c| c.parent_span_id.as_deref() == Some(act.span_id.as_str()))
            .collect();
        assert_eq!(
            calls.len(),
            1,
            "one chat span under act {:?}",
            act.attr("act")
        );
        let call = calls[0];
        assert_eq!(
            call.attr("gen_ai.operation.name"),
            Some("chat"),
            "{call:#?}"
        );
        assert_eq!(
            call.attr("gen_ai.provider.name"),
            Some("gemini"),
            "{call:#?}"
        );
        assert!(
            call.attr("gen_ai.request.model")
                .is_some_and(|m| !m.is_empty()),
            "{call:#?}"
        );
        assert!(
            call.attr("gen_ai.response.model")
                .is_some_and(|m| !m.is_empty()),
            "{call:#?}"
        );
        assert!(int_attr(call, "gen_ai.usage.input_tokens") > 0, "{call:#?}");
        assert!(
            int_attr(call, "gen_ai.usage.output_tokens") > 0,
            "{call:#?}"
        );
        assert_ne!(call.status_code, StatusCode::Error, "{call:#?}");
    }

    let posts = named(trace, "discord.post");
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let post = posts[0];
    assert_eq!(
        post.parent_span_id.as_deref(),
        Some(root.span_id.as_str()),
        "{post:#?}"
    );
    assert!(post.attr("post.id").is_some(), "{post:#?}");
    assert_eq!(post.attr("target.kind"), Some("discord"), "{post:#?}");
    assert_eq!(int_attr(post, "parts"), 1);
    // The delivery's own span for each message it sends, inside the post's.
    let messages = named(trace, "discord.message");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(
        messages[0].parent_span_id.as_deref(),
        Some(post.span_id.as_str()),
        "{messages:#?}"
    );
    assert_eq!(messages[0].attr("target.kind"), Some("discord"));
    assert_ne!(messages[0].status_code, StatusCode::Error, "{messages:#?}");

    for name in [
        "store.start_run",
        "store.finish_run",
        "store.enqueue",
        "store.mark_posted",
    ] {
        let spans = named(trace, name);
        assert!(!spans.is_empty(), "a {name} span in the run's trace");
        for s in spans {
            assert_eq!(s.attr("db.system"), Some("sqlite"), "{s:#?}");
            assert!(s.attr("db.operation.name").is_some(), "{s:#?}");
        }
    }

    // Prompt text is never an attribute (nor an event attribute).
    for span in all {
        let values = span
            .attributes
            .values()
            .chain(span.events.iter().flat_map(|e| e.attributes.values()));
        for value in values {
            assert!(
                !value.contains("Draft a tip about") && !value.contains("Critique:"),
                "prompt text in {}: {value:?}",
                span.name
            );
        }
    }

    for span in trace {
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some(service)
        );
        assert_eq!(
            span.resource.get("service.version").map(String::as_str),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            span.resource.get("service.instance.id"),
            root.resource.get("service.instance.id")
        );
    }
    let instance = root
        .resource
        .get("service.instance.id")
        .expect("service.instance.id");
    assert_eq!(instance.len(), 36, "a UUID: {instance}");
}

/// One run end to end over OTLP/gRPC: SIGTERM right after the post, and the shutdown flush
/// delivers the whole span tree of the run (the batch delay is a minute, so nothing else could
/// have), with GenAI, Discord and store spans and the resource attributes; the human log lines
/// of the run carry its trace id.
#[tokio::test]
async fn one_run_exports_its_span_tree_and_sigterm_flushes_it() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let child = serve(&env, &receiver.endpoint(), &[]);
    wait_for_post(&env, 1).await;
    assert!(
        receiver.spans().is_empty(),
        "nothing exported before the shutdown flush"
    );
    stop(&env, child, LIMIT).await;

    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bot-server");

    let logs = stderr_of(&env);
    let started = logs
        .lines()
        .find(|l| l.contains("run started"))
        .unwrap_or_else(|| panic!("no `run started` line:\n{logs}"));
    assert!(
        started.contains(&format!("trace_id={}", root.trace_id)),
        "the log line carries the trace id {}: {started}",
        root.trace_id
    );
}

/// A failing run (the model answers 400): the `actor.run` and `chat {model}` spans have status
/// Error with the error's message (and `error.type` on the call), and so does the act.
#[tokio::test]
async fn a_failed_run_has_error_status_with_the_message() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    env.write("tip.toml", TIP);
    for _ in 0..3 {
        env.llm.push(Reply::Raw {
            status: 400,
            headers: vec![],
            body: r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#.into(),
        });
    }
    env.config(
        "",
        "[[actors]]\nname = \"tip\"\nnarrative = \"tip.toml\"\ntarget = \"chan\"\nvars = { topic = \"x\" }\n[actors.schedule]\ntype = \"Interval\"\nseconds = 3600\n",
    );
    let child = serve(&env, &receiver.endpoint(), &[]);
    wait_for_log(&env, "run failed").await;
    stop(&env, child, LIMIT).await;
    assert!(env.discord.messages().is_empty());

    let (root, trace) = run_trace(&receiver).await;
    assert_eq!(root.status_code, StatusCode::Error, "{root:#?}");
    assert!(root.status_message.contains("bad"), "{root:#?}");
    assert_eq!(root.attr("outcome"), Some("failure"), "{root:#?}");
    let calls = chats(&trace);
    assert!(!calls.is_empty(), "{trace:#?}");
    for call in &calls {
        assert_eq!(call.status_code, StatusCode::Error, "{call:#?}");
        assert_eq!(call.attr("error.type"), Some("bad_request"), "{call:#?}");
        assert!(call.status_message.contains("bad"), "{call:#?}");
        assert_eq!(call.attr("gen_ai.provider.name"), Some("gemini"));
    }
    let acts = named(&trace, "narrative.act");
    assert_eq!(acts.len(), 1, "the run stopped at the first act: {acts:#?}");
    assert_eq!(acts[0].status_code, StatusCode::Error, "{:#?}", acts[0]);
}

/// A post Discord refuses (AutoMod's 400): its `discord.message` span, the delivery's own, has
/// status Error with the error's kind and Discord's message, inside the post's span.
#[tokio::test]
async fn a_refused_message_has_error_status_with_its_kind() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    env.discord.push_failure(Fail::BlockedByAutoMod);
    env.config(
        "",
        "[[actors]]\nname = \"poster\"\nnarrative = \"one.toml\"\ntarget = \"chan\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 3600\n",
    );
    env.write("one.toml", ONE_ACT);
    let child = serve(&env, &receiver.endpoint(), &[]);
    wait_for_log(&env, "marked failed").await;
    stop(&env, child, LIMIT).await;
    assert!(env.discord.messages().is_empty());

    let spans = receiver.spans();
    let messages = named(&spans, "discord.message");
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = messages[0];
    assert_eq!(message.status_code, StatusCode::Error, "{message:#?}");
    assert!(message.status_message.contains("AutoMod"), "{message:#?}");
    assert_eq!(
        message.attr("error.type"),
        Some("api_error"),
        "{message:#?}"
    );
    let post = named(&spans, "discord.post")[0];
    assert_eq!(
        message.parent_span_id.as_deref(),
        Some(post.span_id.as_str())
    );
}

/// A closed port for a collector that is down.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// The collector down (a closed port, exports every 200 ms): the run still completes and
/// posts, and the process exits 0 promptly after SIGTERM despite the failing exports.
#[tokio::test]
async fn collector_down_blocks_nothing() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let child = serve(&env, &closed_port(), &[("OTEL_BSP_SCHEDULE_DELAY", "200")]);
    wait_for_post(&env, 1).await;
    let took = stop(&env, child, LIMIT).await;
    assert!(
        took < Duration::from_secs(10),
        "exit took {took:?}; stderr:\n{}",
        stderr_of(&env)
    );
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
}

/// A collector that starts late: the first run completes while it is down, and the traces of
/// later runs reach it once it is up, without a restart.
#[tokio::test]
async fn collector_starting_late_gets_later_traces() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config(
        "",
        "[[actors]]\nname = \"tip\"\nnarrative = \"tip.toml\"\ntarget = \"chan\"\nvars = { topic = \"x\" }\n[actors.schedule]\ntype = \"Interval\"\nseconds = 2\n",
    );
    let endpoint = closed_port();
    let addr = endpoint.trim_start_matches("http://").parse().unwrap();
    let child = serve(&env, &endpoint, &[("OTEL_BSP_SCHEDULE_DELAY", "200")]);
    wait_for_log(&env, "run succeeded").await;
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
    let receiver = FakeOtlp::start_on(addr)
        .await
        .expect("the port is still free");
    let later_run = |spans: &[ReceivedSpan]| {
        spans
            .iter()
            .any(|s| s.name == "actor.run" && s.attr("run.id").is_some_and(|id| id != "1"))
    };
    let arrived = receiver.wait_for(later_run, LIMIT).await;
    stop(&env, child, LIMIT).await;
    if let Err(spans) = arrived {
        panic!(
            "no later run's trace reached the late collector; got {spans:#?}\nstderr:\n{}",
            stderr_of(&env)
        );
    }
}

/// OTLP over HTTP/protobuf (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`) to the HTTP receiver
/// delivers the same span tree, under the `OTEL_SERVICE_NAME` given.
#[tokio::test]
async fn http_protobuf_export() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start_http().await;
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let child = serve(
        &env,
        &receiver.endpoint(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", "bots-http"),
        ],
    );
    wait_for_post(&env, 1).await;
    stop(&env, child, LIMIT).await;
    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bots-http");
}

/// `LOG_FORMAT=json`: every stderr line is a JSON object, and the lines logged inside the run
/// (`run started` among them) carry the trace id of the exported root span.
#[tokio::test]
async fn json_logs_carry_the_trace_id() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let child = serve(&env, &receiver.endpoint(), &[("LOG_FORMAT", "json")]);
    wait_for_post(&env, 1).await;
    stop(&env, child, LIMIT).await;
    let (root, _) = run_trace(&receiver).await;

    let logs = stderr_of(&env);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let run_trace_ids = |line: &serde_json::Value| -> Vec<String> {
        line["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["name"] == "actor.run")
            .map(|s| s["trace_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let in_run: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| !run_trace_ids(l).is_empty())
        .collect();
    assert!(
        in_run
            .iter()
            .any(|l| l["fields"]["message"] == "run started"),
        "a `run started` line inside the run:\n{logs}"
    );
    for line in in_run {
        assert_eq!(
            run_trace_ids(line),
            std::slice::from_ref(&root.trace_id),
            "{line}"
        );
    }
}

/// `OTEL_EXPORTER=stdout` (the alias of `OTEL_TRACES_EXPORTER`): the run's spans are printed
/// on stdout at shutdown, with the resource's service name.
#[tokio::test]
async fn stdout_exporter_prints_the_spans() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let out = env.path("stdout.log");
    let child = serve_command(&env, "http://127.0.0.1:9", &[("OTEL_EXPORTER", "stdout")])
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .spawn()
        .unwrap();
    wait_for_post(&env, 1).await;
    stop(&env, child, LIMIT).await;
    let printed = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "Name         : actor.run",
        "Name         : narrative.act",
        "Name         : chat ",
        "service.name=String(Owned(\"bot-server\"))",
    ] {
        assert!(
            printed.contains(needle),
            "no `{needle}` in stdout:\n{printed}"
        );
    }
}

/// Invalid telemetry settings stop the binary before it does anything, naming the variable
/// and the allowed values.
#[tokio::test]
async fn invalid_settings_are_named() {
    let env = TestEnv::new().await;
    env.config("", "");
    for (var, value, expected) in [
        (
            "OTEL_EXPORTER",
            "jaeger",
            "error: OTEL_EXPORTER=\"jaeger\" is not valid: expected one of `otlp`, `stdout`, `none`",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "http/json",
            "error: OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not valid: expected one of `grpc`, `http/protobuf`",
        ),
        (
            "OTEL_TRACES_SAMPLER_ARG",
            "2",
            "error: OTEL_TRACES_SAMPLER_ARG=\"2\" is not valid: expected a sampling ratio from 0 to 1",
        ),
        (
            "OTEL_TRACES_SAMPLER",
            "sometimes",
            "error: OTEL_TRACES_SAMPLER=\"sometimes\" is not valid: expected one of `always_on`",
        ),
        (
            "OTEL_SDK_DISABLED",
            "yes",
            "error: OTEL_SDK_DISABLED=\"yes\" is not valid: expected `true` or `false`",
        ),
        (
            "OTEL_TRACES_EXPORTER",
            "zipkin",
            "error: OTEL_TRACES_EXPORTER=\"zipkin\" is not valid: expected one of `otlp`, `stdout`, `none`",
        ),
    ] {
        let o = env
            .command(&["check"])
            .env(var, value)
            .output()
            .await
            .unwrap();
        assert!(!o.status.success(), "{var}={value} accepted");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expected), "{var}={value}: {stderr}");
        assert!(o.stdout.is_empty(), "{var}={value}: nothing ran");
    }
}

/// The stand-in HTTP receiver answers like an OTLP/HTTP endpoint: 415 for a content type
/// other than protobuf, 400 for a body that is not an `ExportTraceServiceRequest`, 200 with a
/// protobuf body for a valid (empty) one, and only the valid one counts as an export (and has
/// its headers recorded).
#[tokio::test]
async fn fake_otlp_http_answers_like_otlp() {
    let receiver = FakeOtlp::start_http().await;
    let url = format!("{}/v1/traces", receiver.endpoint());
    let client = reqwest::Client::new();
    let post = |content_type: &'static str, body: Vec<u8>| {
        client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let r = post("application/json", b"{}".to_vec()).await.unwrap();
    assert_eq!(r.status(), 415);
    let r = post("application/x-protobuf", vec![0xff, 0xff, 0xff])
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("application/x-protobuf", Vec::new()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-protobuf"
    );
    assert_eq!(receiver.export_count(), 1);
    assert!(receiver.spans().is_empty());
    // The accepted export's headers are recorded, the refused ones' not.
    let exports = receiver.headers();
    assert_eq!(exports.len(), 1, "{exports:?}");
    assert!(
        exports[0].contains(&("content-type".into(), "application/x-protobuf".into())),
        "{exports:?}"
    );
}

/// A collector that accepts connections but never answers: the run still posts, and the exit
/// after SIGTERM waits for the flush at most the shutdown timeout (5 s), not the export
/// timeout.
#[tokio::test]
async fn hanging_collector_delays_exit_at_most_the_shutdown_timeout() {
    let env = TestEnv::new().await;
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    // Connections complete in the kernel's backlog; nobody ever reads or answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", blackhole.local_addr().unwrap());
    let child = serve(&env, &endpoint, &[]);
    wait_for_post(&env, 1).await;
    let took = stop(&env, child, LIMIT).await;
    assert!(
        took < bot_server::telemetry::SHUTDOWN_TIMEOUT + Duration::from_secs(3),
        "exit took {took:?}; stderr:\n{}",
        stderr_of(&env)
    );
    assert!(
        stderr_of(&env).contains("traces not flushed at shutdown"),
        "{}",
        stderr_of(&env)
    );
    drop(blackhole);
}

/// A stopped `serve` whose run posted, with OTLP export every 200 ms to `receiver` and the
/// `extra` variables; returns its stderr.
async fn one_run_exporting_every_200ms(
    env: &TestEnv,
    receiver: &FakeOtlp,
    extra: &[(&str, &str)],
) -> String {
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let mut vars = vec![("OTEL_BSP_SCHEDULE_DELAY", "200")];
    vars.extend_from_slice(extra);
    let child = serve(env, &receiver.endpoint(), &vars);
    wait_for_post(env, 1).await;
    stop(env, child, LIMIT).await;
    stderr_of(env)
}

/// OTLP/gRPC to an `https://` collector (the receiver serving TLS with a certificate from a CA
/// made here) whose CA is given by `OTEL_EXPORTER_OTLP_CERTIFICATE`: the run's span tree
/// arrives.
#[tokio::test]
async fn grpc_over_tls_trusts_the_ca_file() {
    let env = TestEnv::new().await;
    let pki = Pki::new("collector");
    let receiver = FakeOtlp::start_tls(&pki.cert_pem, &pki.key_pem).await;
    assert!(receiver.endpoint().starts_with("https://"));
    let ca = pki.write_ca(&env, "collector-ca.pem");
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let child = serve(
        &env,
        &receiver.endpoint(),
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap())],
    );
    wait_for_post(&env, 1).await;
    stop(&env, child, LIMIT).await;
    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bot-server");
}

/// The same collector without its CA (not in the trust store, no CA file): every export
/// fails, logged with rustls' unknown-issuer error, and the process still runs, posts and
/// exits 0.
#[tokio::test]
async fn grpc_over_tls_without_the_ca_fails_exports_only() {
    let env = TestEnv::new().await;
    let pki = Pki::new("collector");
    let receiver = FakeOtlp::start_tls(&pki.cert_pem, &pki.key_pem).await;
    let logs = one_run_exporting_every_200ms(&env, &receiver, &[]).await;
    assert!(logs.contains("UnknownIssuer"), "{logs}");
    assert_eq!(receiver.export_count(), 0);
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
}

/// OTLP/HTTP to an `https://` collector (the HTTP receiver behind a TLS front) whose CA is
/// given by the per-signal `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`: the spans arrive.
#[tokio::test]
async fn http_protobuf_over_tls_trusts_the_traces_ca_file() {
    let env = TestEnv::new().await;
    let pki = Pki::new("collector");
    let receiver = FakeOtlp::start_http().await;
    let front = TlsFront::start(receiver.addr(), &pki, &[b"http/1.1"]).await;
    let ca = pki.write_ca(&env, "collector-ca.pem");
    env.write("tip.toml", TIP);
    env.config("", TIP_ONCE);
    let child = serve(
        &env,
        &front.url(),
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                ca.to_str().unwrap(),
            ),
        ],
    );
    wait_for_post(&env, 1).await;
    stop(&env, child, LIMIT).await;
    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bot-server");
}

/// A CA file that cannot be read stops the start-up, naming the variable and the path.
#[tokio::test]
async fn unreadable_ca_file_is_named() {
    let env = TestEnv::new().await;
    env.config("", "");
    let o = env
        .command(&["check"])
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:9")
        .env("OTEL_EXPORTER_OTLP_CERTIFICATE", "/no/such/ca.pem")
        .output()
        .await
        .unwrap();
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_CERTIFICATE=/no/such/ca.pem: cannot read the CA file"),
        "{stderr}"
    );
}

/// `OTEL_SDK_DISABLED=true` with `OTEL_TRACES_EXPORTER=otlp` and a live collector: no
/// exporter is built (no "exporting traces" line), nothing is exported, the run posts.
#[tokio::test]
async fn sdk_disabled_exports_nothing() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    let logs =
        one_run_exporting_every_200ms(&env, &receiver, &[("OTEL_SDK_DISABLED", "true")]).await;
    assert!(!logs.contains("exporting traces by OTLP"), "{logs}");
    assert_eq!(receiver.export_count(), 0);
    assert_eq!(env.discord.messages_in(CHANNEL).len(), 1);
}

/// `OTEL_TRACES_SAMPLER=always_off`: the exporter runs, but no span is sampled, so none
/// arrives; `parentbased_traceidratio` with a ratio of 0 samples no run either.
#[tokio::test]
async fn sampler_always_off_samples_nothing() {
    for vars in [
        &[("OTEL_TRACES_SAMPLER", "always_off")][..],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ][..],
    ] {
        let env = TestEnv::new().await;
        let receiver = FakeOtlp::start().await;
        let logs = one_run_exporting_every_200ms(&env, &receiver, vars).await;
        assert!(logs.contains("exporting traces by OTLP"), "{logs}");
        assert!(
            receiver.spans().is_empty(),
            "{vars:?}: {:#?}",
            receiver.spans()
        );
    }
}

/// `OTEL_TRACES_SAMPLER=always_on` (the explicit default) exports the run.
#[tokio::test]
async fn sampler_always_on_samples_the_run() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    one_run_exporting_every_200ms(&env, &receiver, &[("OTEL_TRACES_SAMPLER", "always_on")]).await;
    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bot-server");
}

/// Asserts that every export `receiver` accepted (at least one) carried header `name` with
/// `value`, and none carried `absent`.
fn assert_every_export_has(receiver: &FakeOtlp, name: &str, value: &str, absent: &str) {
    let exports = receiver.headers();
    assert!(!exports.is_empty(), "no export arrived");
    for headers in &exports {
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values, [value], "`{name}` of an export: {headers:?}");
        assert!(
            headers.iter().all(|(n, _)| n != absent),
            "`{absent}` was sent: {headers:?}"
        );
    }
}

/// Asserts that none of `secrets` shows in `logs` (the binary's stderr at `RUST_LOG=debug`).
fn assert_no_secret_in(logs: &str, secrets: &[&str]) {
    assert!(
        logs.contains("exporting traces by OTLP"),
        "the binary ran with the exporter:\n{logs}"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "`{secret}` in the logs:\n{logs}");
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS_FILE` over OTLP/gRPC: every export carries the file's headers
/// as metadata, values percent-decoded (a Honeycomb team key, a Grafana-style Basic
/// authorization); no value shows in the debug logs, which name the file's variable and the
/// header names.
#[tokio::test]
async fn headers_file_reaches_the_grpc_collector() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start().await;
    env.write(
        "otlp-headers",
        "x-honeycomb-team=hc-s3cr3t-team-key, Authorization=Basic%20Z3JhZmFuYTpzM2NyM3Q=\n",
    );
    let file = env.path("otlp-headers");
    let logs = one_run_exporting_every_200ms(
        &env,
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS_FILE", file.to_str().unwrap()),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bot-server");
    assert_every_export_has(&receiver, "x-honeycomb-team", "hc-s3cr3t-team-key", "");
    assert_every_export_has(&receiver, "authorization", "Basic Z3JhZmFuYTpzM2NyM3Q=", "");
    assert_no_secret_in(
        &logs,
        &["hc-s3cr3t-team-key", "Z3JhZmFuYTpzM2NyM3Q", "s3cr3t"],
    );
    let started = logs
        .lines()
        .find(|l| l.contains("exporting traces by OTLP"))
        .unwrap();
    assert!(
        started.contains("headers_file=\"OTEL_EXPORTER_OTLP_HEADERS_FILE\"")
            && started.contains("header_names=\"x-honeycomb-team,authorization\""),
        "{started}"
    );
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE` over OTLP/HTTP: every export carries its header,
/// decoded once (`%25` is a `%`, not the start of another escape), and not the headers of the
/// general file, which the traces one replaces; no value shows in the debug logs.
#[tokio::test]
async fn traces_headers_file_reaches_the_http_collector() {
    let env = TestEnv::new().await;
    let receiver = FakeOtlp::start_http().await;
    env.write("traces-headers", "x-api-key=s3cr3t%2541%2Cz\n");
    env.write("general-headers", "x-general=g3n3ral-s3cr3t\n");
    let traces = env.path("traces-headers");
    let general = env.path("general-headers");
    let logs = one_run_exporting_every_200ms(
        &env,
        &receiver,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE",
                traces.to_str().unwrap(),
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS_FILE", general.to_str().unwrap()),
            ("RUST_LOG", "debug"),
        ],
    )
    .await;
    let (root, trace) = run_trace(&receiver).await;
    assert_tip_trace(&receiver.spans(), &root, &trace, "bot-server");
    assert_every_export_has(&receiver, "x-api-key", "s3cr3t%41,z", "x-general");
    assert_no_secret_in(&logs, &["s3cr3t", "g3n3ral"]);
}

/// The plain `OTEL_EXPORTER_OTLP_HEADERS` still works over both transports (read by
/// `opentelemetry-otlp` itself): every export carries its header.
#[tokio::test]
async fn plain_headers_variable_still_works() {
    for http in [false, true] {
        let env = TestEnv::new().await;
        let receiver = if http {
            FakeOtlp::start_http().await
        } else {
            FakeOtlp::start().await
        };
        let mut vars = vec![("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=plain%20key")];
        if http {
            vars.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"));
        }
        one_run_exporting_every_200ms(&env, &receiver, &vars).await;
        run_trace(&receiver).await;
        assert_every_export_has(&receiver, "x-honeycomb-team", "plain key", "");
    }
}

/// Headers variables that cannot be used stop the start-up, naming the variables (and the
/// file's path), never a header value: a variable and its `_FILE` both set, the traces file
/// with the plain general variable, a malformed entry, an unreadable file.
#[tokio::test]
async fn headers_file_errors_are_named_without_values() {
    let env = TestEnv::new().await;
    env.config("", "");
    env.write(
        "bad-headers",
        "x-honeycomb-team=ok,Authorization Basic s3cr3t\n",
    );
    env.write("good-headers", "x-honeycomb-team=s3cr3t\n");
    let bad = env.path("bad-headers");
    let bad = bad.to_str().unwrap();
    let good = env.path("good-headers");
    let good = good.to_str().unwrap();
    let malformed = format!(
        "error: OTEL_EXPORTER_OTLP_HEADERS_FILE={bad}: entry 2 is not a valid header (no `=`)"
    );
    for (vars, expected) in [
        (
            vec![
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=s3cr3t"),
                ("OTEL_EXPORTER_OTLP_HEADERS_FILE", good),
            ],
            "error: both OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_HEADERS_FILE are set",
        ),
        (
            vec![
                (
                    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                    "x-honeycomb-team=s3cr3t",
                ),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", good),
            ],
            "error: both OTEL_EXPORTER_OTLP_TRACES_HEADERS and \
             OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE are set",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-honeycomb-team=s3cr3t"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", good),
            ],
            "error: OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE and OTEL_EXPORTER_OTLP_HEADERS are \
             both set",
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_HEADERS_FILE", bad)],
            malformed.as_str(),
        ),
        (
            vec![("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE", "/no/such/headers")],
            "error: OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE=/no/such/headers: cannot read the file",
        ),
    ] {
        let mut cmd = env.command(&["check"]);
        cmd.env("OTEL_TRACES_EXPORTER", "otlp")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS_FILE")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS_FILE");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let o = cmd.output().await.unwrap();
        assert!(!o.status.success(), "{vars:?} accepted");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expected), "{vars:?}: {stderr}");
        assert!(!stderr.contains("s3cr3t"), "{vars:?}: {stderr}");
        assert!(o.stdout.is_empty(), "{vars:?}: nothing ran");
    }
}
