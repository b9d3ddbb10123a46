//! IoT Core's rules engine, played locally: the topic rules of
//! `infra/template.yaml` (`template.rs`) and their SQL (`sql.rs`).

pub mod sql;
pub mod template;
