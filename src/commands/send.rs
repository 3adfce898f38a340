//! `csm send`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct SendArgs {}

pub fn run(_g: &GlobalArgs, _a: SendArgs) -> Result<Exit> {
    Err(CsmError::usage("csm send: not available in this build yet"))
}
