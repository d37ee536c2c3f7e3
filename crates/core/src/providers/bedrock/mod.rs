//! AWS Bedrock batch inference (placeholder until the dialect lands).

pub mod client;

pub use client::BedrockProvider;
