//! License open APIs (activate, heartbeat, software usage info) of the stand-in marketplace.
