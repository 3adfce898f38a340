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

/// Writes `data` to `path` so that a reader never sees half a file: a temporary file in the
/// same directory, flushed to disk, then renamed over `path`. `private` files are created
/// 0600 from the start (never readable by others, not even briefly).
pub fn write_atomic(path: &Path, data: &[u8], private: bool) -> Result<()> {
    write_atomic_all(&[(path, data, private)])
}

/// [`write_atomic`] for files that belong together (a key pair): every temporary file is
/// written first and targets that cannot be replaced are refused before any rename, so a
/// full disk or a directory in the way leaves the old set whole.
pub fn write_atomic_all(files: &[(&Path, &[u8], bool)]) -> Result<()> {
    for (path, _, _) in files {
        if path.is_dir() {
            return Err(CsmError::io(
                *path,
                std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "a directory is in the way",
                ),
            ));
        }
    }
    let mut temps: Vec<std::path::PathBuf> = Vec::with_capacity(files.len());
    let cleanup = |temps: &[std::path::PathBuf]| {
        for t in temps {
            let _ = std::fs::remove_file(t);
        }
    };
    for (path, data, private) in files {
        match write_temp(path, data, *private) {
            Ok(t) => temps.push(t),
            Err(e) => {
                cleanup(&temps);
                return Err(e);
            }
        }
    }
    for (i, ((path, _, _), tmp)) in files.iter().zip(&temps).enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            cleanup(&temps[i..]);
            return Err(CsmError::io(*path, e));
        }
    }
    Ok(())
}

/// A temporary sibling of `path` holding `data`, synced; removed again on failure.
fn write_temp(path: &Path, data: &[u8], private: bool) -> Result<std::path::PathBuf> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CsmError::usage(format!("{}: not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        crate::clock::alphanumeric(8)
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(CsmError::io(path, e));
    }
    Ok(tmp)
}
