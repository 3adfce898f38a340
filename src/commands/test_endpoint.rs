//! `csm test-endpoint`.

use crate::cli::GlobalArgs;
use crate::error::{CsmError, Exit, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct TestEndpointArgs {}

pub fn run(_g: &GlobalArgs, _a: TestEndpointArgs) -> Result<Exit> {
    Err(CsmError::usage(
        "csm test-endpoint: not available in this build yet",
    ))
}
