//! The stand-in marketplace: usage push API and license open APIs behind one router.

pub mod license_api;
pub mod usage_api;
