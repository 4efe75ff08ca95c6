//! The image side: the store, image archives, layers (unpacked, and made from a container).
//!
//! - [`Store`]: a local OCI image layout holding builders, runtime images and built images;
//!   images by name, id, or a transport (`docker-archive:PATH`, `oci-archive:PATH[:REF]`,
//!   `oci:DIR[:REF]`, imported on the way); tags, removal, archive import and export.
//! - [`Store::layer_dirs`]: the overlay lower dirs of an image (top first), each layer unpacked
//!   once, by chain id; [`Store::flatten_into`] for the copy fallback.
//! - [`Store::commit`]: a new image from an overlay upper dir (or a changed flattened rootfs).
//! - `remote`: pulls from and pushes to a registry, layers streamed into and out of the blobs.
//! - [`unpack()`]: a tar applied to a directory with every path kept inside it, for layers and
//!   for archives copied into a container (`upload_archive`).

mod archive;
mod commit;
mod error;
mod pgzip;
pub mod remote;
mod store;
mod tar_read;
mod unpack;

#[cfg(test)]
mod tests;

pub use archive::Transport;
pub use commit::{source_date_epoch, CommitChanges, Diff, RUNTIME_MOUNT_POINTS};
pub use s2i_registry::digest::Digest;
pub use error::{ImageError, Result};
pub use s2i_registry::oci::ImageConfig;
pub use store::{normalize_name, Image, Lease, Limits, Store, MAX_BLOB_ENV, MAX_JSON_ENV};
pub use unpack::{unpack, Unpack, UnpackStats, Whiteouts};
