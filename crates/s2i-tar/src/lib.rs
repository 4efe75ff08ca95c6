//! Untrusted tar streams: a streaming reader whose every record is bounded, and the one guard
//! that every stream s2i passes on goes through (source archives, save-artifacts output, runtime
//! artifacts).
