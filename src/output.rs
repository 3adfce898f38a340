//! Printing shared by the commands: errors to stderr, JSON and tables to stdout.

/// `println!` that stops quietly when stdout is closed (`csm … | head`) instead of
/// panicking with a backtrace.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use crate::error::CsmError;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// `csm: error: <message>` on stderr, then the hint the error carries, if any: a hint is
/// attached where the fix is known, never guessed from the message.
pub fn print_error(err: &CsmError) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "csm: error: {err}");
    if let Some(h) = err.hint() {
        let _ = writeln!(e, "  hint: {h}");
    }
}

/// Whether a command wrote its JSON report: one that failed before it did gets an error
/// object instead, so `--json` output is never empty.
static JSON_WRITTEN: AtomicBool = AtomicBool::new(false);

/// With `--json`, a command that ended in `err` before writing its report: `{"error",
/// "hint", "exit_code"}` on stdout (the error line still goes to stderr).
pub fn print_json_error(err: &CsmError) {
    if JSON_WRITTEN.load(Ordering::Relaxed) {
        return;
    }
    print_json(&serde_json::json!({
        "error": err.to_string(),
        "hint": err.hint(),
        "exit_code": err.exit().code(),
    }));
}

/// Writes a JSON value and a newline to stdout. A closed pipe is not an error.
pub fn print_json(value: &serde_json::Value) {
    JSON_WRITTEN.store(true, Ordering::Relaxed);
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// Colour on stdout: never with `NO_COLOR` set, always with `CLICOLOR_FORCE` set (not "0"),
/// else only on a terminal that is not `TERM=dumb`.
pub fn colour() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("NO_COLOR") {
        return false;
    }
    if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") {
        return true;
    }
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// A table with csm's look: no colours, width from the terminal (or 120 when piped).
pub fn table() -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        t.force_no_tty();
        t.set_width(120);
    } else if t.width().is_none_or(|w| w < 40) {
        // A terminal that reports no width, or none to speak of (0 columns under `script`),
        // would fold every column to one character.
        t.set_width(120);
    }
    t
}

/// Text an endpoint sent, fit for a terminal or a CI log: control characters (an escape
/// sequence, a bell) shown escaped (`\u{1b}`), line breaks kept.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' => "\n".to_string(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// `1 request`, `2 requests`: a count with its noun.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_endpoints_escape_sequence_is_shown_not_sent_on() {
        assert_eq!(
            super::printable("\u{1b}[31mred\u{7}\nnext"),
            "\\u{1b}[31mred\\u{7}\nnext"
        );
    }
}
