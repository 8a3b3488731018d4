//! Versioned binary encoding of stored records.
