//! JSON at the byte level: the hot path's scanner and writer, the byte
//! classes they search for, and zero-copy string fields for serde.

pub(crate) mod byte_classes;
pub(crate) mod scanner;
pub(crate) mod text;
pub(crate) mod writer;
