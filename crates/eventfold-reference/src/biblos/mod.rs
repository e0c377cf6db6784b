//! BIBLOS (seed 000): the cross-reference lifecycle and the per-verse processing pipeline.

pub mod cross_reference;
pub mod verse_processing;
