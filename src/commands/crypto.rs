//! `csm crypto`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct CryptoArgs {}

pub fn run(_g: &GlobalArgs, _a: CryptoArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm crypto: not available in this build yet",
    ))
}
