//! The benchmark driver: runs a release `bot-server serve` as a child process against fake
//! LLM and Discord servers hosted in *this* process (so the bot-server's own cost is what its
//! process accounts for), and reports what a run costs.
//!
//! Scenarios (each bounded in time, stops by itself):
//!
//! - `load --actors N --seconds S`: N actors, each a 3-act narrative on a 1 s interval; runs
//!   per second, schedule lateness p50/p99/max (from the runs' recorded `scheduled_at` and
//!   `started_at`), CPU ms per run of the bot-server process, peak RSS, `/metrics` scrape time,
//!   state-store growth per 1,000 runs.
//! - `idle --seconds S`: the offline demo config (`actor_server.toml`); RSS and CPU per minute.
//! - `startup --runs R`: time from exec to `/readyz` 200 with R run records already stored.
//!
//! Usage: `cargo run --release --example bench_load -- SCENARIO [options]` (see `just bench`).
//! Results are printed as a Markdown table row and appended as JSON to
//! `target/bench/results.jsonl`.

use anyhow::{Context, bail};
use bot_server::fakes::discord::FakeDiscord;
use bot_server::fakes::llm::FakeLlm;
use bot_server::llm::ProviderKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const TOKEN: &str = "bench-token";
const CHANNEL: u64 = 4242;

#[derive(Debug)]
struct Args {
    scenario: String,
    actors: usize,
    seconds: u64,
    runs: u64,
    interval: u64,
    bin: PathBuf,
    warmup: u64,
    log: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        scenario: String::new(),
        actors: 100,
        seconds: 30,
        runs: 0,
        interval: 1,
        bin: PathBuf::from("target/release/bot-server"),
        warmup: 5,
        log: "warn".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--actors" => args.actors = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--interval" => args.interval = value()?.parse()?,
            "--bin" => args.bin = value()?.into(),
            "--warmup" => args.warmup = value()?.parse()?,
            "--log" => args.log = value()?,
            s if !s.starts_with('-') && args.scenario.is_empty() => args.scenario = s.to_owned(),
            other => bail!("unknown argument {other}"),
        }
    }
    if args.scenario.is_empty() {
        bail!(
            "usage: bench_load load|idle|startup [--actors N] [--seconds S] [--runs R] [--bin PATH]"
        );
    }
    // Absolute: the server runs in a temporary directory.
    args.bin = std::fs::canonicalize(&args.bin).with_context(|| {
        format!(
            "{} not found: build it with `cargo build --release`",
            args.bin.display()
        )
    })?;
    Ok(args)
}

/// CPU seconds (user + system) and peak RSS (bytes) of a process, from /proc.
fn proc_stats(pid: u32) -> anyhow::Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f[11].parse::<f64>()? + f[12].parse::<f64>()?) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((cpu, kb("VmHWM:") * 1024, kb("VmRSS:") * 1024))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(19090)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

const NARRATIVE: &str = r#"
[narrative]
name = "bench"
[toc]
order = ["draft", "critique", "final"]
[acts]
draft = "{{ now }} {{ actor }}: draft a tip about {{ topic }}."
critique = "{{ now }} {{ actor }}: critique {{ draft }}"
final = "{{ now }} {{ actor }}: final post from {{ critique }}"
[vars]
topic = "rust"
"#;

struct Server {
    child: Child,
    admin: String,
    dir: tempfile::TempDir,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??;
        if !status.success() {
            bail!("bot-server exited with {status}");
        }
        Ok(self.dir)
    }
}

async fn spawn(args: &Args, dir: tempfile::TempDir, config: &Path) -> anyhow::Result<Server> {
    let child = Command::new(&args.bin)
        .args(["--config", &config.display().to_string(), "serve"])
        .current_dir(dir.path())
        .env("RUST_LOG", &args.log)
        .env("OTEL_TRACES_EXPORTER", "none")
        .env_remove("OTEL_EXPORTER")
        .env("DISCORD_TOKEN", TOKEN)
        .env("OPENAI_BENCH_KEY", "bench-key")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", args.bin.display()))?;
    let text = std::fs::read_to_string(config)?;
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("admin_listen = \"127.0.0.1:"))
        .and_then(|p| p.trim_end_matches('"').parse::<u16>().ok())
        .context("admin port")?;
    Ok(Server {
        child,
        admin: format!("http://127.0.0.1:{port}"),
        dir,
    })
}

async fn wait_ready(
    client: &reqwest::Client,
    admin: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{admin}/readyz")).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sum of `botticelli_actor_runs_total` over all actors and outcomes, and the scrape time.
async fn runs_total(client: &reqwest::Client, admin: &str) -> anyhow::Result<(f64, Duration)> {
    let started = Instant::now();
    let text = client
        .get(format!("{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let took = started.elapsed();
    let total = text
        .lines()
        .filter(|l| l.starts_with("botticelli_actor_runs_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Ok((total, took))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn record(result: &serde_json::Value) {
    let _ = std::fs::create_dir_all("target/bench");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("target/bench/results.jsonl")
    {
        use std::io::Write;
        let _ = writeln!(f, "{result}");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(result).unwrap_or_default()
    );
}

async fn load(args: &Args) -> anyhow::Result<()> {
    let llm = FakeLlm::start(ProviderKind::Openai, "bench-key").await;
    let discord = FakeDiscord::start(TOKEN).await;
    discord.add_channel(CHANNEL);
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("bench.toml"), NARRATIVE)?;
    let port = free_port();
    let mut config = format!(
        r#"[server]
state_dir = "state"
default_provider = "fake"
check_interval_seconds = 5
max_concurrent_runs = 256
shutdown_grace_seconds = 30
admin_listen = "127.0.0.1:{port}"

[discord]
base_url = "{discord}"

[providers.fake]
kind = "openai"
base_url = "{llm}"
api_key_env = "OPENAI_BENCH_KEY"
default_model = "bench-model"

[targets.console]
type = "log"

[targets.chan]
type = "discord"
channel_id = "{CHANNEL}"
"#,
        discord = discord.base_url(),
        llm = llm.base_url(),
    );
    for i in 0..args.actors {
        // One actor in a hundred posts to Discord; the rest to the log: Discord's global limit
        // (50 requests/s per bot, enforced by the client) would otherwise set the pace.
        let target = if i % 100 == 0 { "chan" } else { "console" };
        config.push_str(&format!(
            "\n[[actors]]\nname = \"a{i}\"\nnarrative = \"bench.toml\"\ntarget = \"{target}\"\n[actors.schedule]\ntype = \"interval\"\nseconds = {}\n",
            args.interval
        ));
    }
    let config_path = dir.path().join("actor_server.toml");
    std::fs::write(&config_path, config)?;
    let client = reqwest::Client::new();
    let server = spawn(args, dir, &config_path).await?;
    wait_ready(&client, &server.admin, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    let state = server.dir.path().join("state");
    let (cpu0, _, _) = proc_stats(server.pid())?;
    let (runs0, _) = runs_total(&client, &server.admin).await?;
    let db0 = dir_size(&state);
    let window_start = chrono::Utc::now();
    let started = Instant::now();
    let mut scrapes = Vec::new();
    // A scrape every 5 s (Prometheus' default is 15 s): frequent enough to time it, not so
    // frequent that scraping becomes part of the per-run cost.
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (_, took) = runs_total(&client, &server.admin).await?;
        scrapes.push(took.as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (runs1, _) = runs_total(&client, &server.admin).await?;
    let (cpu1, peak_rss, _) = proc_stats(server.pid())?;
    let db1 = dir_size(&state);
    let window_end = chrono::Utc::now();
    let dir = server.stop().await?;

    let store = bot_server::store::Store::open(&dir.path().join("state"), None).await?;
    let runs = store.recent_runs(None, u32::MAX).await?;
    let mut lateness: Vec<f64> = runs
        .iter()
        .filter(|r| r.started_at >= window_start && r.started_at <= window_end)
        .filter_map(|r| Some((r.started_at - r.scheduled_at?).num_microseconds()? as f64 / 1000.0))
        .collect();
    lateness.sort_by(f64::total_cmp);
    let failed = runs
        .iter()
        .filter(|r| r.outcome != bot_server::actor_state::RunOutcome::Success)
        .count();
    store.close().await;
    scrapes.sort_by(f64::total_cmp);
    let done = runs1 - runs0;
    let expected = args.actors as f64 * elapsed / args.interval as f64;
    let result = serde_json::json!({
        "scenario": "load",
        "actors": args.actors,
        "interval_seconds": args.interval,
        "window_seconds": (elapsed * 10.0).round() / 10.0,
        "runs": done,
        "runs_expected": expected.round(),
        "runs_per_second": (done / elapsed * 10.0).round() / 10.0,
        "runs_not_successful_total": failed,
        "lateness_ms_p50": percentile(&lateness, 50.0),
        "lateness_ms_p99": percentile(&lateness, 99.0),
        "lateness_ms_max": lateness.last().copied().unwrap_or(f64::NAN),
        "cpu_ms_per_run": ((cpu1 - cpu0) * 1000.0 / done.max(1.0) * 1000.0).round() / 1000.0,
        "cpu_cores_used": ((cpu1 - cpu0) / elapsed * 100.0).round() / 100.0,
        "peak_rss_mb": (peak_rss as f64 / 1048576.0 * 10.0).round() / 10.0,
        "metrics_scrape_ms_p50": percentile(&scrapes, 50.0),
        "metrics_scrape_ms_max": scrapes.last().copied().unwrap_or(f64::NAN),
        "store_bytes_per_1000_runs": ((db1 as f64 - db0 as f64) / done.max(1.0) * 1000.0).round(),
        "llm_requests_served": llm.request_count(),
        "discord_messages": discord.messages().len(),
        "log_filter": args.log,
    });
    record(&result);
    Ok(())
}

async fn idle(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let port = free_port();
    let demo = std::fs::read_to_string(root.join("actor_server.toml"))?.replace(
        "admin_listen = \"127.0.0.1:9090\"",
        &format!("admin_listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(dir.path().join("actor_server.toml"), demo)?;
    let narratives = dir.path().join("narratives");
    std::fs::create_dir_all(&narratives)?;
    for entry in std::fs::read_dir(root.join("narratives"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), narratives.join(entry.file_name()))?;
    }
    let config_path = dir.path().join("actor_server.toml");
    let client = reqwest::Client::new();
    let server = spawn(args, dir, &config_path).await?;
    wait_ready(&client, &server.admin, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let (cpu0, _, _) = proc_stats(server.pid())?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu1, peak, rss) = proc_stats(server.pid())?;
    let (runs, _) = runs_total(&client, &server.admin).await?;
    server.stop().await?;
    record(&serde_json::json!({
        "scenario": "idle (demo config)",
        "window_seconds": elapsed.round(),
        "rss_mb": (rss as f64 / 1048576.0 * 10.0).round() / 10.0,
        "peak_rss_mb": (peak as f64 / 1048576.0 * 10.0).round() / 10.0,
        "cpu_ms_per_minute": ((cpu1 - cpu0) * 1000.0 / elapsed * 60.0).round(),
        "runs_during_test": runs,
        "log_filter": args.log,
    }));
    Ok(())
}

async fn startup(args: &Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state");
    if args.runs > 0 {
        populate(&state, args.runs).await?;
    }
    let port = free_port();
    let config = format!(
        "[server]\nstate_dir = \"state\"\ndefault_provider = \"offline\"\nadmin_listen = \"127.0.0.1:{port}\"\n[targets.console]\ntype = \"log\"\n[[actors]]\nname = \"a0\"\nnarrative = \"n.toml\"\ntarget = \"console\"\n[actors.schedule]\ntype = \"interval\"\nseconds = 3600\n"
    );
    std::fs::write(
        dir.path().join("n.toml"),
        "[narrative]\nname = \"n\"\n[acts]\nonly = \"hello\"\n",
    )?;
    let config_path = dir.path().join("actor_server.toml");
    std::fs::write(&config_path, config)?;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    let mut dir = dir;
    for _ in 0..5 {
        let started = Instant::now();
        let server = spawn(args, dir, &config_path).await?;
        wait_ready(&client, &server.admin, Duration::from_secs(30)).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let rss = proc_stats(server.pid())?.2;
        dir = server.stop().await?;
        if times.len() == 5 {
            times.sort_by(f64::total_cmp);
            record(&serde_json::json!({
                "scenario": "startup",
                "stored_runs": args.runs,
                "exec_to_ready_ms_min": (times[0] * 10.0).round() / 10.0,
                "exec_to_ready_ms_median": (times[2] * 10.0).round() / 10.0,
                "exec_to_ready_ms_max": (times[4] * 10.0).round() / 10.0,
                "rss_after_ready_mb": (rss as f64 / 1048576.0 * 10.0).round() / 10.0,
            }));
        }
    }
    Ok(())
}

/// Fills a state store with `runs` finished run records (and three act outputs each) in one
/// transaction, as a long-lived server would have.
async fn populate(state: &Path, runs: u64) -> anyhow::Result<()> {
    let store = bot_server::store::Store::open(state, None).await?;
    store.close().await;
    let conn = rusqlite::Connection::open(state.join(bot_server::store::DB_FILE))?;
    let now = chrono::Utc::now().timestamp_millis();
    conn.execute_batch("BEGIN")?;
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO runs (actor, narrative, started_at, scheduled_at, finished_at, outcome) \
         SELECT 'a' || (i % 100), 'n', ?2 - i * 1000, ?2 - i * 1000, ?2 - i * 1000 + 50, 'success' FROM n",
        rusqlite::params![runs as i64, now],
    )?;
    conn.execute(
        "INSERT INTO act_outputs (run_id, position, act, provider, model, output, input_tokens, output_tokens, duration_ms) \
         SELECT id, p.p, 'act' || p.p, 'offline', 'm', 'a typical act output of a few dozen words, stored for the record', 30, 40, 5 \
         FROM runs, (SELECT 0 AS p UNION ALL SELECT 1 UNION ALL SELECT 2) AS p",
        [],
    )?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    match args.scenario.as_str() {
        "load" => load(&args).await,
        "idle" => idle(&args).await,
        "startup" => startup(&args).await,
        other => bail!("unknown scenario {other}: load, idle or startup"),
    }
}
