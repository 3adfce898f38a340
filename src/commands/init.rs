//! `csm init`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct InitArgs {}

pub fn run(_g: &GlobalArgs, _a: InitArgs) -> Result<Exit> {
    Err(CsmError::usage("csm init: not available in this build yet"))
}
