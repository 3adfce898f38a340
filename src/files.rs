//! Reading user-named input files with a size limit, so that `/dev/zero` or a wrong path to a
//! huge file is refused instead of filling memory.

use crate::error::{CsmError, Result};
use std::io::Read;
use std::path::Path;

/// Key files: an access key is a few dozen bytes.
pub const KEY_LIMIT: u64 = 64 * 1024;
/// Bodies and captures: the API Gateway signs bodies up to 12 MB.
pub const BODY_LIMIT: u64 = 32 * 1024 * 1024;

/// Reads `path` (`-` = standard input) whole, refusing more than `limit` bytes.
/// `what` names the flag in messages, e.g. `--body-file`.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let shown = format!("{what} {}", path.display());
    let mut buf = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut buf))
    };
    read.map_err(|e| CsmError::io(&shown, e))?;
    if buf.len() as u64 > limit {
        return Err(CsmError::usage(format!(
            "{shown}: larger than {} bytes (the most csm reads for this input)",
            limit
        )));
    }
    Ok(buf)
}
