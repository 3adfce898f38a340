//! Reading user-named input files with a size limit, so that `/dev/zero` or a wrong path to a
//! huge file is refused instead of filling memory.

use crate::error::{CsmError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Key files: an access key is a few dozen bytes.
pub const KEY_LIMIT: u64 = 64 * 1024;
/// Bodies and captures: the API Gateway signs bodies up to 12 MB.
pub const BODY_LIMIT: u64 = 32 * 1024 * 1024;

/// `-` names standard input wherever a file is read.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Standard input can be read once: `what` (a flag) takes it, and a second `-` is refused
/// naming the first rather than read as empty. Claiming it again for the same `what` is fine.
pub fn claim_stdin(what: &str) -> Result<()> {
    static STDIN_READ_BY: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut by = STDIN_READ_BY.lock().unwrap_or_else(|e| e.into_inner());
    // Claimed ahead by the input that will read it (before the keys are read): its own.
    if by.as_deref() == Some(what) {
        return Ok(());
    }
    if let Some(first) = by.as_ref() {
        return Err(CsmError::usage(format!(
            "{what} -: standard input is taken by {first} already; give one of them a file"
        )));
    }
    *by = Some(what.to_string());
    Ok(())
}

/// Reads `path` (`-` = standard input) whole, refusing more than `limit` bytes.
/// `what` names the flag in messages, e.g. `--body-file`.
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let shown = format!("{what} {}", path.display());
    let mut buf = Vec::new();
    let read = if is_stdin(path) {
        claim_stdin(what)?;
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

/// `--body-file` (alias `--body`): a file, or `-` for stdin. JSON typed in place of the path
/// is the usual slip, so it is named as such (a usage error; the value is not echoed: a body
/// may carry a secret).
pub fn read_body_file(path: &Path) -> Result<Vec<u8>> {
    let text = path.to_string_lossy();
    let looks_inline = matches!(text.trim_start().chars().next(), Some('{' | '['));
    if looks_inline && !path.exists() {
        return Err(CsmError::usage(
            "--body-file: the value is JSON, not a file; --body/--body-file takes the path of a file holding the body (or - to read it from stdin)",
        ));
    }
    read_limited(path, BODY_LIMIT, "--body-file")
}

/// [`read_limited`] for a text file a person saved (a key, a license code, a list): UTF-8,
/// or a usage error naming `what`; without the byte order mark Windows editors (Notepad) put
/// first, which belongs to the file. A body to sign is read as bytes, never through this.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let buf = read_limited(path, limit, what)?;
    let text = String::from_utf8(buf).map_err(|_| {
        CsmError::usage(format!(
            "{what} {}: binary data, not a text file",
            path.display()
        ))
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(t) => t.to_string(),
        None => text,
    })
}

/// Where `p` is, symbolic links and `..` resolved; for a file not there yet, its resolved
/// directory and its name.
pub fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), p.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => p.to_path_buf(),
    }
}

/// Whether `a` and `b` are one file on disk, also through a hard link.
#[cfg(unix)]
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Without inode numbers, only the resolved paths are compared.
#[cfg(not(unix))]
pub fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// A report `flag` will write at the end of a run must be creatable now: its directory
/// exists and is not read-only (checked before the run, so that no result is lost to it).
pub fn check_writable(path: &Path, flag: &str) -> Result<()> {
    let named = |e| CsmError::io(format!("{flag} {}", path.display()), e);
    let target = target_of(path).map_err(|e| match e {
        CsmError::Io { source, .. } => named(source),
        e => e,
    })?;
    if target.is_dir() {
        return Err(named(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "a directory is in the way",
        )));
    }
    // The report goes in as a temporary sibling renamed over it: its directory must take one
    // (a writable file in a directory that takes none, such as /proc, fails only then).
    match write_temp(&target, false, |_| Ok(())) {
        Ok((tmp, ())) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(CsmError::Io { source, .. }) => Err(named(source)),
        Err(e) => Err(e),
    }
}

/// Where a write to `path` lands: through a symbolic link (a CI job's artifact link), its
/// target, so that the rename replaces the file the link names and not the link.
fn target_of(path: &Path) -> Result<std::path::PathBuf> {
    let mut p = path.to_path_buf();
    // As the kernel does: 40 links at most, so that a loop of them is an error.
    for _ in 0..40 {
        match std::fs::read_link(&p) {
            Ok(next) => {
                p = match p.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                }
            }
            Err(_) => return Ok(p),
        }
    }
    Err(CsmError::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "too many levels of symbolic links (a loop?)",
        ),
    ))
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
    let targets: Vec<std::path::PathBuf> = files
        .iter()
        .map(|(p, _, _)| target_of(p))
        .collect::<Result<_>>()?;
    let files: Vec<(&Path, &[u8], bool)> = files
        .iter()
        .zip(&targets)
        .map(|((_, data, private), t)| (t.as_path(), *data, *private))
        .collect();
    for (path, _, _) in &files {
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
    for (path, data, private) in &files {
        let fill =
            |w: &mut dyn std::io::Write| w.write_all(data).map_err(|e| CsmError::io(*path, e));
        match write_temp(path, *private, fill) {
            Ok((t, ())) => temps.push(t),
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

/// Writes `path` by streaming into a temporary sibling through `fill`, then renaming it over
/// `path` (an export too large to hold): a reader never sees a half-written file.
pub fn write_atomic_with<T>(
    path: &Path,
    private: bool,
    fill: impl FnOnce(&mut dyn std::io::Write) -> Result<T>,
) -> Result<T> {
    let path = &target_of(path)?;
    let (tmp, value) = write_temp(path, private, fill)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CsmError::io(path, e)
    })?;
    Ok(value)
}

/// A temporary sibling of `path` filled by `fill`, synced; removed again on failure.
fn write_temp<T>(
    path: &Path,
    private: bool,
    fill: impl FnOnce(&mut dyn std::io::Write) -> Result<T>,
) -> Result<(std::path::PathBuf, T)> {
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
    let written = opts
        .open(&tmp)
        .map_err(|e| CsmError::io(path, e))
        .and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            let value = fill(&mut w)?;
            let f = w
                .into_inner()
                .map_err(|e| CsmError::io(path, e.into_error()))?;
            f.sync_all().map_err(|e| CsmError::io(path, e))?;
            Ok(value)
        });
    match written {
        Ok(value) => Ok((tmp, value)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_streamed_write_that_fails_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export.csv");
        std::fs::write(&out, "old").unwrap();
        let failed = write_atomic_with(&out, false, |w| {
            w.write_all(b"half").unwrap();
            Err::<(), _>(CsmError::usage("stopped"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
        assert_eq!(names(dir.path()), ["export.csv"]);
        let n = write_atomic_with(&out, false, |w| {
            w.write_all(b"new").map_err(|e| CsmError::io(&out, e))?;
            Ok(3)
        })
        .unwrap();
        assert_eq!(
            (n, std::fs::read_to_string(&out).unwrap()),
            (3, "new".into())
        );
        assert_eq!(names(dir.path()), ["export.csv"]);
    }

    /// A CI job that links its artifact path to the report gets the report in the file the
    /// link names; the link stays a link, and the check before the run leaves nothing behind.
    #[cfg(unix)]
    #[test]
    fn a_report_behind_a_symbolic_link_lands_in_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::create_dir(&artifacts).unwrap();
        let target = artifacts.join("junit.xml");
        let link = dir.path().join("link.xml");
        std::os::unix::fs::symlink("artifacts/junit.xml", &link).unwrap();
        // Dangling: the check creates no target and keeps the link.
        check_writable(&link, "--junit").unwrap();
        assert!(!target.exists());
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        write_atomic(&link, b"first", false).unwrap();
        std::fs::write(&target, "old").unwrap();
        write_atomic(&link, b"new", false).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(names(&artifacts), ["junit.xml"]);
        // A loop of links is an error, not a link replaced by a file.
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink("b", &a).unwrap();
        std::os::unix::fs::symlink("a", &b).unwrap();
        assert!(check_writable(&a, "--junit").is_err());
        assert!(write_atomic(&a, b"x", false).is_err());
        assert!(a.symlink_metadata().unwrap().file_type().is_symlink());
    }

    /// A file that opens for writing in a directory that takes no new file (/proc) is refused
    /// before the run, not after it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_report_path_whose_directory_takes_no_file_is_refused_first() {
        let e = check_writable(Path::new("/proc/version"), "--junit").unwrap_err();
        assert!(e.to_string().starts_with("--junit /proc/version:"), "{e}");
    }
}
