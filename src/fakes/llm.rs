//! Fake LLM provider APIs.
