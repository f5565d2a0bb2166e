//! Tests of loading the server config: defaults, targets, ranges, schedule spellings,
//! durations, secrets kept out of messages.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/bot/actor_server.toml"), text, |_| None)
}

/// A secret in an actor's `vars` (by reference, through a file, pasted, or a webhook URL) is
/// refused with the file, the line and the key, never its value: vars go into the prompts.
#[test]
fn secrets_in_actor_vars_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "file-held-key-123\n").unwrap();
    let key_file = key_file.to_str().unwrap().to_owned();
    let token = "MTIzNDU2.bot-token.s3cret";
    let hook = "https://discord.com/api/webhooks/1/hook-s3cret";
    let env = |name: &str| match name {
        "DISCORD_TOKEN" => Some(token.to_owned()),
        "DISCORD_WEBHOOK_URL" => Some(hook.to_owned()),
        "TOPIC_FILE" => Some(key_file.clone()),
        _ => None,
    };
    let config = |vars: &str| {
        format!(
            "[targets.hook]\ntype = \"webhook\"\nurl = \"${{DISCORD_WEBHOOK_URL}}\"\n\
             [[actors]]\nname = \"a\"\nnarrative = \"n.toml\"\ntarget = \"hook\"\n\
             vars = {{ topic = \"rust\" }}\n[actors.schedule]\ntype = \"immediate\"\n\
             [[actors]]\nname = \"b\"\nnarrative = \"n.toml\"\ntarget = \"hook\"\n\
             {vars}\n[actors.schedule]\ntype = \"immediate\"\n"
        )
    };
    let path = Path::new("/etc/bot/actor_server.toml");
    let refused = |vars: &str| {
        Config::parse(path, &config(vars), env)
            .unwrap_err()
            .to_string()
    };
    let e = refused("vars = { topic = \"go\", t = \"${DISCORD_TOKEN}\" }");
    assert!(
        e.starts_with("/etc/bot/actor_server.toml:15: `actors[1].vars.t` holds the value of DISCORD_TOKEN, a secret: "),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    // Pasted, in a [actors.vars] table of its own.
    let e = refused(&format!("[actors.vars]\nx = \"a\"\ny = \"say {token}\""));
    assert!(
        e.starts_with(
            "/etc/bot/actor_server.toml:17: `actors[1].vars.y` holds the value of DISCORD_TOKEN"
        ),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    // Read from a file under a name that says nothing.
    let e = refused("vars = { t = \"${TOPIC}\" }");
    assert!(
        e.contains(":15: `actors[1].vars.t` holds the value of TOPIC, a secret"),
        "{e}"
    );
    // A webhook URL, pasted or by reference.
    let e = refused(&format!("vars = {{ t = \"{hook}\" }}"));
    assert!(
        e.contains("holds the value of the webhook URL of target `hook`"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    // Ordinary values load.
    let ok = Config::parse(path, &config("vars = { t = \"${HOME:-x}\" }"), env).unwrap();
    assert_eq!(ok.actors[1].vars["t"], "x");
}

#[test]
fn example_config_documents_the_defaults() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/actor_server.example.toml"
    ));
    let text = std::fs::read_to_string(path).unwrap();
    let env = |name: &str| {
        if name.ends_with("_FILE") {
            return None;
        }
        Some(match name {
            "DISCORD_CHANNEL_ID" => "123456789012345678".to_owned(),
            "DISCORD_WEBHOOK_URL" => "https://discord.com/api/webhooks/1/abc".to_owned(),
            _ => "x".to_owned(),
        })
    };
    let file: ConfigFile = tomlfile::parse(path, &text, env).unwrap();
    assert_eq!(
        file.server,
        ServerSettings {
            default_provider: file.server.default_provider.clone(),
            ..ServerSettings::default()
        }
    );
    assert_eq!(file.discord, DiscordSettings::default());
    Config::from_file(path, file).unwrap();
}

/// A webhook URL given as `${VAR}` (here read from `VAR_FILE`) is used, but shows neither
/// in the config's `Debug` nor in the error for a URL that is not a webhook.
#[test]
fn webhook_url_from_a_file_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hook");
    let text = "[targets.hook]\ntype = \"webhook\"\nurl = \"${DISCORD_WEBHOOK_URL}\"\n\
                [[actors]]\nname = \"a\"\nnarrative = \"n.toml\"\ntarget = \"hook\"\n\
                [actors.schedule]\ntype = \"Immediate\"\n";
    let path = Path::new("/etc/bot/actor_server.toml");
    let load = |url: &str| {
        std::fs::write(&file, format!("{url}\n")).unwrap();
        let env = |name: &str| {
            (name == "DISCORD_WEBHOOK_URL_FILE").then(|| file.to_str().unwrap().to_owned())
        };
        let parsed: ConfigFile = tomlfile::parse(path, text, env)?;
        Config::from_file(path, parsed)
    };
    let url = "https://discord.com/api/webhooks/1/s3cret-token";
    let config = load(url).unwrap();
    assert_eq!(
        config.actors[0].target,
        Target::Webhook {
            url: Secret::new(url)
        }
    );
    assert!(!format!("{config:?}").contains("s3cret"));
    let e = load("https://example.com/s3cret-token")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/bot/actor_server.toml: `targets.hook.url`: not a Discord webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN)"
    );
}

#[test]
fn legacy_channel_id_is_a_discord_target() {
    let c = parse(
        "[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\nchannel_id = \"42\"\n[actors.schedule]\ntype = \"Interval\"\nseconds = 5\n",
    )
    .unwrap();
    assert_eq!(c.actors[0].target, Target::Discord { channel_id: 42 });
    assert_eq!(
        c.actors[0].narrative.as_deref(),
        Some(Path::new("/etc/bot/n.toml"))
    );
    assert_eq!(c.server.state_dir, Path::new("/etc/bot/state"));
}

#[test]
fn unknown_target_is_named() {
    let e = parse("[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\ntarget = \"nope\"\n[actors.schedule]\ntype = \"Immediate\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/bot/actor_server.toml: `actors[0].target`: no target named `nope` (defined: []); add a [targets.nope] table"
    );
}

const INTERVAL_ACTOR: &str = "[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\ntarget = \"log\"\n[actors.schedule]\ntype = \"Interval\"\n";
const LOG_TARGET: &str = "[targets.log]\ntype = \"log\"\n";

/// A number out of range is refused with the file, the key, the allowed range and the
/// value, for server, Discord, provider, schedule and actor keys, zero and huge alike.
#[test]
fn numbers_out_of_range_are_named_with_their_range() {
    let schedule = |lines: &str| format!("{LOG_TARGET}{INTERVAL_ACTOR}{lines}");
    let actor = |lines: &str| {
        format!(
            "{LOG_TARGET}{}seconds = 60\n",
            INTERVAL_ACTOR.replace("[actors.schedule]", &format!("{lines}[actors.schedule]"))
        )
    };
    for (text, key, message) in [
        (
            "[server]\ncheck_interval_seconds = 86401\n".to_owned(),
            "server.check_interval_seconds",
            "must be between 1 and 86400 (a day), not 86401",
        ),
        (
            "[server]\ncheck_interval_seconds = 0\n".to_owned(),
            "server.check_interval_seconds",
            "must be between 1 and 86400 (a day), not 0",
        ),
        (
            "[server]\ncircuit_cooldown_seconds = 9223372036854775807\n".to_owned(),
            "server.circuit_cooldown_seconds",
            "must be between 0 and 315360000 (10 years), not 9223372036854775807",
        ),
        (
            "[server]\nmax_concurrent_runs = 0\n".to_owned(),
            "server.max_concurrent_runs",
            "must be between 1 and 1000, not 0",
        ),
        (
            "[server]\nrun_retention_days = 36501\n".to_owned(),
            "server.run_retention_days",
            "must be between 0 and 36500 (100 years), not 36501",
        ),
        (
            "[server]\nshutdown_grace_seconds = 86401\n".to_owned(),
            "server.shutdown_grace_seconds",
            "must be between 0 and 86400 (a day), not 86401",
        ),
        (
            "[discord]\ntimeout_seconds = 0\n".to_owned(),
            "discord.timeout_seconds",
            "must be between 1 and 86400 (a day), not 0",
        ),
        (
            "[providers.gemini]\nmax_backoff_seconds = 86401\n".to_owned(),
            "providers.gemini.max_backoff_seconds",
            "must be between 0 and 86400 (a day), not 86401",
        ),
        (
            schedule("seconds = 9223372036854775807\n"),
            "actors[0].schedule.seconds",
            "must be between 1 and 315360000 (10 years), not 9223372036854775807",
        ),
        (
            schedule("seconds = -5\n"),
            "actors[0].schedule.seconds",
            "must be between 1 and 315360000 (10 years), not -5",
        ),
        (
            schedule("seconds = 60\njitter_seconds = 61\n"),
            "actors[0].schedule.jitter_seconds",
            "must be between 0 and 60 (the interval `seconds`), not 61",
        ),
        (
            schedule("seconds = 315360000\njitter_seconds = 31536001\n"),
            "actors[0].schedule.jitter_seconds",
            "must be between 0 and 31536000 (a year), not 31536001",
        ),
        (
            actor("batch_size = 0\n"),
            "actors[0].batch_size",
            "must be between 1 and 1000, not 0",
        ),
        (
            actor("run_timeout_seconds = 86401\n"),
            "actors[0].run_timeout_seconds",
            "must be between 1 and 86400 (a day), not 86401",
        ),
    ] {
        let e = parse(&text).expect_err(&text).to_string();
        assert_eq!(
            e,
            format!("/etc/bot/actor_server.toml: `{key}`: {message}"),
            "{text}"
        );
    }
}

/// Every numeric key at its maximum loads: the limits are inclusive.
#[test]
fn numbers_at_their_maximum_load() {
    let text = format!(
        "[server]\ncheck_interval_seconds = 86400\nmax_consecutive_failures = 1000\ncircuit_cooldown_seconds = 315360000\n\
         shutdown_grace_seconds = 86400\nrun_timeout_seconds = 86400\nmax_concurrent_runs = 1000\n\
         run_retention_days = 36500\nmax_parts_per_post = 100\npost_retention_days = 36500\n\
         [discord]\ntimeout_seconds = 86400\n\
         [providers.gemini]\ntimeout_seconds = 86400\nmax_backoff_seconds = 86400\n\
         {LOG_TARGET}{}seconds = 315360000\njitter_seconds = 31536000\n",
        INTERVAL_ACTOR.replace(
            "[actors.schedule]",
            "batch_size = 1000\nrun_timeout_seconds = 86400\n[actors.schedule]"
        )
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.circuit_cooldown_seconds, 10 * limits::YEAR);
    assert_eq!(c.actors[0].batch_size, 1000);
    assert!(matches!(
        c.actors[0].schedule,
        Schedule::Interval {
            seconds: 315_360_000,
            jitter_seconds: 31_536_000
        }
    ));
}

/// Schedule types are lowercase like every other enum of the config; the PascalCase
/// spelling of earlier versions still loads.
#[test]
fn schedule_types_are_lowercase_with_the_old_spelling_accepted() {
    for (lower, pascal, rest) in [
        ("interval", "Interval", "seconds = 60\n"),
        ("cron", "Cron", "expression = \"0 9 * * *\"\n"),
        ("immediate", "Immediate", ""),
        ("once", "Once", "at = \"2030-01-01T00:00:00Z\"\n"),
    ] {
        for ty in [lower, pascal] {
            let text = format!(
                "{LOG_TARGET}{}",
                INTERVAL_ACTOR
                    .replace("type = \"Interval\"\n", &format!("type = \"{ty}\"\n{rest}"))
            );
            let c = parse(&text).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert!(
                c.actors[0]
                    .schedule
                    .describe()
                    .to_lowercase()
                    .contains(match lower {
                        "interval" => "every",
                        other => other,
                    }),
                "{ty}"
            );
        }
    }
}

/// Durations take a number of seconds or a string with a unit, for schedule, server,
/// Discord and actor keys; the ranges apply to the seconds.
#[test]
fn durations_take_units() {
    let text = format!(
        "[server]\ncheck_interval_seconds = \"2m\"\ncircuit_cooldown_seconds = \"1d\"\n\
         shutdown_grace_seconds = \"90s\"\nrun_timeout_seconds = \"1h\"\n\
         [discord]\ntimeout_seconds = \"30s\"\n\
         [providers.gemini]\ntimeout_seconds = \"2m\"\nmax_backoff_seconds = \"1m30s\"\n\
         {LOG_TARGET}{}seconds = \"15m\"\njitter_seconds = \"1m30s\"\n",
        INTERVAL_ACTOR.replace(
            "[actors.schedule]",
            "run_timeout_seconds = \"2h\"\n[actors.schedule]"
        )
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.check_interval_seconds, 120);
    assert_eq!(c.server.circuit_cooldown_seconds, 86_400);
    assert_eq!(c.server.shutdown_grace_seconds, 90);
    assert_eq!(c.server.run_timeout_seconds, 3_600);
    assert_eq!(c.discord.timeout_seconds, 30);
    assert_eq!(c.providers["gemini"].timeout_seconds, Some(120));
    assert_eq!(c.providers["gemini"].max_backoff_seconds, Some(90));
    assert_eq!(c.actors[0].run_timeout_seconds, 7_200);
    assert!(matches!(
        c.actors[0].schedule,
        Schedule::Interval {
            seconds: 900,
            jitter_seconds: 90
        }
    ));
}

/// A duration that is not one is refused naming the key and the accepted forms; one out
/// of range names the range in seconds.
#[test]
fn bad_durations_name_the_key_and_the_forms() {
    let accepted = crate::duration::ACCEPTED;
    let e = parse(&format!(
        "{LOG_TARGET}{INTERVAL_ACTOR}seconds = \"15 minutes\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        format!(
            "/etc/bot/actor_server.toml: `actors[0].schedule.seconds`: `15 minutes` is not a duration: expected {accepted}"
        )
    );
    let e = parse("[server]\ncheck_interval_seconds = \"1w\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "/etc/bot/actor_server.toml:2: `server.check_interval_seconds`: `1w` is not a duration: expected {accepted}"
        )
    );
    let e = parse("[server]\ncheck_interval_seconds = \"2d\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/bot/actor_server.toml: `server.check_interval_seconds`: must be between 1 and 86400 (a day), not 172800"
    );
}

#[test]
fn bad_schedule_type_is_a_parse_error_with_line() {
    let e = parse("[[actors]]\nname = \"tip\"\nnarrative = \"n.toml\"\n[actors.schedule]\ntype = \"Weekly\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "/etc/bot/actor_server.toml:5: `actors[0].schedule.type`: unknown variant `Weekly`"
        ),
        "{e}"
    );
    assert!(e.contains("Weekly"), "{e}");
}
