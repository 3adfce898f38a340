//! The spool directory: files of events dropped by the seller's services. A file is taken
//! in whole (its events committed to the agent state in one transaction) and then moved to
//! `done/`; a file with any bad event goes to `failed/` untouched, with `NAME.error` beside
//! it, and nothing of it is counted. A crash between the commit and the move leaves the file
//! in place: read again, its events are duplicates of themselves (same event_id).

use super::event;
use super::{lock, Shared};
use crate::error::{CsmError, Result};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// A spool file larger than this is refused (split it): it is read whole.
pub const MAX_FILE: u64 = 16 * 1024 * 1024;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SpoolReport {
    pub done: Vec<String>,
    /// File name and the first problem.
    pub failed: Vec<(String, String)>,
    pub new: u64,
    pub duplicate: u64,
}

/// Names the writer is still busy with (`.name`, `name.tmp`, `name.part`) are left alone:
/// write under such a name, then rename into the spool.
fn in_progress(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part")
}

/// Where a file goes in `done/` or `failed/`: its own name, or with `.N` added when an
/// earlier file of that name is there already.
fn free_name(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() && !dir.join(format!("{name}.error")).exists() {
        return first;
    }
    (1..)
        .map(|n| dir.join(format!("{name}.{n}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// The events and bad lines of a file, or why it cannot be read as one.
fn read_events(path: &Path, now: DateTime<Utc>) -> std::result::Result<event::Parsed, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let csv = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => true,
        Some("jsonl" | "ndjson" | "json") => false,
        _ => {
            return Err(format!(
                "{name}: not an event file (the spool takes .csv with a header, or .jsonl/.ndjson/.json with one object per line)"
            ))
        }
    };
    let bytes =
        crate::files::read_limited(path, MAX_FILE, "spool file").map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "{name}: not UTF-8 (at byte {}); event files are UTF-8",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok(event::parse_document(&text, csv, now))
}

/// The spool is made by the seller, never by the agent (a mistyped path would otherwise be
/// watched in vain), at start and at every cycle (one removed meanwhile is not made again).
pub fn check_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let what = if dir.exists() {
        "not a directory"
    } else {
        "no such directory (create it first; the agent makes only its done/ and failed/)"
    };
    Err(CsmError::Config(format!(
        "--spool {}: {what}",
        dir.display()
    )))
}

/// Takes in every finished file of `dir`, oldest name first.
pub fn take_in(dir: &Path, shared: &Shared, now: DateTime<Utc>) -> Result<SpoolReport> {
    check_dir(dir)?;
    let done_dir = dir.join("done");
    let failed_dir = dir.join("failed");
    for d in [&done_dir, &failed_dir] {
        std::fs::create_dir_all(d).map_err(|e| CsmError::io(d, e))?;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| CsmError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !in_progress(n))
        })
        .collect();
    files.sort();
    let mut rep = SpoolReport::default();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let agg = shared.aggregate;
        let outcome = match read_events(&path, now) {
            Err(why) => Err(vec![why]),
            // All or nothing; the .error file names every problem at once.
            Ok((events, bad)) => {
                let source = format!("spool {name}");
                match lock(&shared.state).admit(&events, bad, &source, now, agg)? {
                    Ok(n) => Ok(n),
                    Err(refused) => Err(refused
                        .into_iter()
                        .map(|r| format!("{name}:{}: {}", r.line, r.message))
                        .collect()),
                }
            }
        };
        match outcome {
            Ok(n) => {
                let to = free_name(&done_dir, &name);
                std::fs::rename(&path, &to).map_err(|e| CsmError::io(&path, e))?;
                shared
                    .counters
                    .spool_new
                    .fetch_add(n.new, Ordering::Relaxed);
                shared
                    .counters
                    .spool_duplicate
                    .fetch_add(n.duplicate, Ordering::Relaxed);
                shared.counters.files_done.fetch_add(1, Ordering::Relaxed);
                rep.new += n.new;
                rep.duplicate += n.duplicate;
                rep.done.push(name);
            }
            Err(lines) => {
                let to = free_name(&failed_dir, &name);
                let mut err_name = to.clone().into_os_string();
                err_name.push(".error");
                let mut text = lines.join("\n");
                text.push('\n');
                // The reason first: a crash before the move leaves the file to be tried again.
                crate::files::write_atomic(Path::new(&err_name), text.as_bytes(), false)?;
                std::fs::rename(&path, &to).map_err(|e| CsmError::io(&path, e))?;
                shared
                    .counters
                    .spool_refused
                    .fetch_add(lines.len() as u64, Ordering::Relaxed);
                shared.counters.files_failed.fetch_add(1, Ordering::Relaxed);
                rep.failed
                    .push((name, lines.into_iter().next().unwrap_or_default()));
            }
        }
    }
    Ok(rep)
}
