pub mod dockerfile;
pub mod standard;
