//! License codes: the seller's own signed format and marketplace-shaped test codes.
