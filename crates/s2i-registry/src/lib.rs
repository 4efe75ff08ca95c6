//! Everything s2i knows about registries, below any engine: image references
//! ([`image_ref`]), where their credentials come from ([`credentials`]), and a client for the
//! registry API ([`client`]). And how every HTTP client of s2i resolves host names ([`dns`]),
//! content digests and short ids ([`digest`]), and the one retry policy ([`retry`]).

pub mod client;
pub mod credentials;
pub mod digest;
pub mod dns;
pub mod image_ref;
pub mod oci;
pub mod retry;

pub use credentials::{ConfigLocation, CredentialSource, Credentials, CredentialsError, DockerConfig, LookupOptions, Resolved};
pub use client::{error_chain, RegistryClient, RegistryError};
pub use image_ref::ImageRef;
