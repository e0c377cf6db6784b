//! BIBLOS (seed 000): the cross-reference lifecycle, the per-verse processing pipeline and the
//! oracle engines' findings per verse.

pub mod cross_reference;
pub mod verse_oracle;
pub mod verse_processing;
