//! The usage push API of the stand-in marketplace.
