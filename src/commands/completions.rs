//! `csm completions`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct CompletionsArgs {}

pub fn run(_g: &GlobalArgs, _a: CompletionsArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm completions: not available in this build yet",
    ))
}
