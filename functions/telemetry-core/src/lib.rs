//! The telemetry core: envelopes -> raw messages -> payload decoding ->
//! readings -> sinks. Pure logic, no AWS SDK: the functions wire it to AWS.

pub mod envelope;
pub mod text;
pub mod timestamp;
pub mod topic;
pub mod unit;
pub mod decode;
pub mod mapping;
pub mod payload;
pub mod reading;
pub mod validate;
pub mod emf;
pub mod json_write;
pub mod cloudwatch;
pub mod deadletter;
pub mod sink;
pub mod pipeline;
pub mod config;
