//! AWS IoT topic rules, run locally (by `iotpipe run`), from the SAM
//! template that deploys them:
//!
//! - [`cloudformation`]: the template as it deploys for chosen parameter
//!   values (`Conditions`, `!If`, `AWS::NoValue`).
//! - [`sql`]: the AWS IoT SQL subset the template's rules use, parsed with
//!   `sqlparser` and evaluated per message.
//! - [`template`]: the template's rules, the functions their actions reach
//!   and the queues and streams between them.
//! - `fuzzing`: the check the rule SQL's fuzz target runs (hidden).

pub mod cloudformation;
pub mod sql;
pub mod template;

#[doc(hidden)]
pub mod fuzzing;

/// `infra/template.yaml`, compiled in, so an installed `iotpipe` provisions
/// and runs what the stack deploys.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");
