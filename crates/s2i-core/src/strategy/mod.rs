pub mod runtime;
pub mod standard;
