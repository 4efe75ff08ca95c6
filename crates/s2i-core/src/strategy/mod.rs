pub mod dockerfile;
pub mod onbuild;
pub mod runtime;
pub mod standard;
