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
//!
//! For the runtime side (what O-run needs to know), changes to the interface of the task file:
//! - `Diff` is an enum, `OverlayUpper { upper, exclude }` or `Rootfs { dir, exclude }`; `exclude`
//!   lists paths inside the container (mount points, bind targets) left out of the layer;
//!   [`RUNTIME_MOUNT_POINTS`] holds the usual ones.
//! - `CommitChanges::entrypoint` is an `Option` (`Some(vec![])` clears, as Docker's commit of `[]`
//!   does); there is a `working_dir` too. `created: Some(t)` also clamps the layer's mtimes.
//! - The overlay must be mounted with `redirect_dir=off,metacopy=off` (a commit refuses an upper
//!   dir with redirects), and the upper dir's root should be 0755: overlay takes the root
//!   directory's attributes from the upper dir.
//! - Hold a [`Lease`] ([`Store::lease`]) while a container uses an image's layer dirs: the sweep
//!   after a removal skips while any lease is held.
//! - `ImageError` converts into `EngineError` (`NotFound` → `ImageNotFound`, `Unsupported` →
//!   `NotSupported`); [`Image::info`] gives the `ImageInfo`.

mod archive;
mod commit;
mod digest;
mod error;
pub mod remote;
mod spec;
mod store;
mod tar_read;
mod unpack;

#[cfg(test)]
mod tests;

pub use archive::Transport;
pub use commit::{source_date_epoch, CommitChanges, Diff, RUNTIME_MOUNT_POINTS};
pub use digest::Digest;
pub use error::{ImageError, Result};
pub use spec::ImageConfig;
pub use store::{normalize_name, Image, Lease, Limits, Store, MAX_BLOB_ENV, MAX_JSON_ENV};
pub use unpack::{unpack, Unpack, UnpackStats, Whiteouts};
