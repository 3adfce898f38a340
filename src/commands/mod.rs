//! One file per subcommand; each only glues protocol code to files, network and terminal.

pub mod callback_args;
pub mod completions;
pub mod crypto;
pub mod init;
pub mod license;
pub mod load;
pub mod man;
pub mod profile;
pub mod send;
pub mod serve;
pub mod serve_marketplace;
pub mod serve_merchant;
pub mod sign;
pub mod test_endpoint;
pub mod usage;
pub mod usage_agent;
pub mod verify;
