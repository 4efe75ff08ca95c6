//! Everything s2i knows about registries, below any engine: image references
//! ([`image_ref`]), where their credentials come from, and a client for the registry API.

pub mod image_ref;

pub use image_ref::ImageRef;
