//! A Discord stand-in, **not Discord**: the library's in-process fake
//! ([`bot_server::fakes::discord::FakeDiscord`], Discord's message routes and their wire format)
//! served on a fixed address, so that a bot-server in a container can be pointed at it
//! (`[discord] base_url`). The end-to-end test runs it on the container network, in its
//! `hang` mode, to stop the bot-server while Discord never answers.
//!
//! Environment:
//!
//! - `DISCORD_LISTEN` (default `0.0.0.0:8080`): where to serve `/api/v10/...`.
//! - `DISCORD_STANDIN_MODE`: `hang` (every message request is read and never answered: a
//!   Discord that hangs) or `answer` (the default: messages are created, as Discord would).
//! - `DISCORD_STANDIN_TOKEN` (default `stand-in-token`): the bot token channel routes accept.
//! - `DISCORD_STANDIN_CHANNELS`: channel ids that exist, comma-separated; `DISCORD_STANDIN_WEBHOOKS`:
//!   `ID:TOKEN` pairs, comma-separated (anything else is 404, as on Discord).
//!
//! It prints `requests received: N` whenever requests arrive, so `podman logs` shows when the
//! bot-server's sends reached it. It stops on SIGTERM or SIGINT.
//!
//!     DISCORD_STANDIN_MODE=hang cargo run --example discord_standin

use std::net::SocketAddr;
use std::time::Duration;

use bot_server::fakes::discord::{Fail, FakeDiscord};

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let listen = var("DISCORD_LISTEN", "0.0.0.0:8080");
    let addr: SocketAddr = listen
        .parse()
        .map_err(|err| format!("DISCORD_LISTEN={listen:?} is not an address: {err}"))?;
    let hang = match var("DISCORD_STANDIN_MODE", "answer").as_str() {
        "hang" => true,
        "answer" => false,
        other => {
            return Err(format!(
                "DISCORD_STANDIN_MODE={other:?}: expected `hang` or `answer`"
            ));
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
    let fake = FakeDiscord::serve(listener, &var("DISCORD_STANDIN_TOKEN", "stand-in-token"));
    for id in var("DISCORD_STANDIN_CHANNELS", "").split(',') {
        if let Ok(id) = id.trim().parse() {
            fake.add_channel(id);
        }
    }
    for pair in var("DISCORD_STANDIN_WEBHOOKS", "").split(',') {
        if let Some((id, token)) = pair.trim().split_once(':')
            && let Ok(id) = id.parse()
        {
            fake.add_webhook(id, token);
        }
    }
    if hang {
        fake.fail_always(Some(Fail::Hang));
    }
    println!(
        "Discord stand-in (not Discord) on {addr}, mode {}",
        if hang { "hang" } else { "answer" }
    );
    let report = async {
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = fake.request_count();
            if now > seen {
                println!("requests received: {now}");
                seen = now;
            }
        }
    };
    tokio::select! {
        () = report => {}
        () = shutdown_signal() => {}
    }
    println!("stopped");
    Ok(())
}
