//! The reference merchant endpoint served by `csm serve merchant`.
