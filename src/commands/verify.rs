//! `csm verify`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct VerifyArgs {}

pub fn run(_g: &GlobalArgs, _a: VerifyArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm verify: not available in this build yet",
    ))
}
