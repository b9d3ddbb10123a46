//! The telemetry core: envelopes -> raw messages -> payload decoding ->
//! readings -> sinks. Pure logic, no AWS SDK: the functions wire it to AWS.

pub mod cloudwatch;
pub mod config;
pub mod deadletter;
pub mod decode;
pub mod emf;
pub mod envelope;
mod json_scan;
pub mod json_write;
pub mod mapping;
pub mod payload;
pub mod pipeline;
pub mod reading;
pub mod sink;
mod special_bytes;
pub mod table;
pub mod text;
pub mod timestamp;
pub mod topic;
pub mod unit;
pub mod validate;
pub mod warehouse;
