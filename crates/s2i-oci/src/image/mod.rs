//! The image side: the store, image archives, layers (unpacked, and made from a container).
