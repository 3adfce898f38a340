//! `csm sign`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct SignArgs {}

pub fn run(_g: &GlobalArgs, _a: SignArgs) -> Result<Exit> {
    Err(CsmError::usage("csm sign: not available in this build yet"))
}
