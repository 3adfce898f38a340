//! `csm serve merchant|marketplace`.

use crate::cli::GlobalArgs;
use crate::error::{Exit, Result};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub target: ServeTarget,
}

#[derive(Debug, Subcommand)]
pub enum ServeTarget {
    /// A reference merchant endpoint: verifies every callback and answers as KooGallery documents it.
    Merchant(super::serve_merchant::MerchantArgs),
    /// A stand-in marketplace: usage push and license open APIs, and License callbacks.
    Marketplace(super::serve_marketplace::MarketplaceArgs),
}

pub fn run(g: &GlobalArgs, a: ServeArgs) -> Result<Exit> {
    match a.target {
        ServeTarget::Merchant(m) => super::serve_merchant::run(g, m),
        ServeTarget::Marketplace(m) => super::serve_marketplace::run(g, m),
    }
}
