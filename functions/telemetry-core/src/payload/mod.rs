//! What the device sent: its fields, the records a payload holds, the
//! declarative mapping that says how to read them, and the value types
//! (timestamps, topics, units) they are read into.

pub mod fields;
pub mod mapping;
pub mod records;
pub mod timestamp;
pub mod topic;
pub mod unit;
