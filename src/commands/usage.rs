//! `csm usage`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct UsageArgs {}

pub fn run(_g: &GlobalArgs, _a: UsageArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm usage: not available in this build yet",
    ))
}
