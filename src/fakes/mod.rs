//! In-process fakes of the external services the bot-server talks to, speaking their real wire
//! formats on `127.0.0.1`. The integration tests and the benchmark load driver use them; nothing in
//! the server itself does.

pub mod discord;
pub mod llm;
pub mod otlp;
