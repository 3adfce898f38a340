//! `csm license`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct LicenseArgs {}

pub fn run(_g: &GlobalArgs, _a: LicenseArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm license: not available in this build yet",
    ))
}
