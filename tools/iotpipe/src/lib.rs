//! The parts of `iotpipe` other crates read too (the end-to-end tests, the
//! fuzz targets), and the binary builds on:
//!
//! - `cloudformation.rs`: the SAM template as it deploys for chosen
//!   parameter values (conditions, `!If`, `AWS::NoValue`).
//! - `rules/`: the local rules engine: AWS IoT SQL (`sql.rs`) and the
//!   template's rules, functions and event sources (`template.rs`).

pub mod cloudformation;
pub mod rules;

/// The template compiled in, so an installed `iotpipe` provisions and runs
/// what the stack deploys; `--template` reads another.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");
