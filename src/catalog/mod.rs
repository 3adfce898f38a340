//! The callback catalog: every callback the marketplace sends, as data, with value generators.
