//! The parts of `iotpipe` other crates (the end-to-end tests) read too.
//!
//! - `cloudformation.rs`: the SAM template as it deploys for chosen
//!   parameter values (conditions, `!If`, `AWS::NoValue`).

pub mod cloudformation;
