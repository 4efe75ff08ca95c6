//! The container side: runtime bundles, their root filesystems, and runc.
