//! `csm serve merchant`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct MerchantArgs {}

pub fn run(_g: &GlobalArgs, _a: MerchantArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm serve merchant: not available in this build yet",
    ))
}
