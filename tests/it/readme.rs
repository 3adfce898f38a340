//! The README's signing, verifying and crypto examples, run as a user pastes them: each
//! `$ ` line (with its `\` continuations and here-documents) through `sh` in one directory,
//! its output compared with the lines printed under it.

use std::path::Path;
use std::process::Command;

/// One example: the command as `sh` runs it, the output the README shows.
struct Example {
    command: String,
    shown: Vec<String>,
}

/// The examples between `from` and `to` (the first line of each, as text).
fn examples(readme: &str, from: &str, to: &str) -> Vec<Example> {
    let start = readme.find(from).expect("start of the examples");
    let end = start + readme[start..].find(to).expect("end of the examples");
    let mut out: Vec<Example> = Vec::new();
    let mut in_block = false;
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            in_block = line == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(first) = line.strip_prefix("$ ") {
            let mut command = first.to_string();
            let mut last = first.to_string();
            while last.ends_with('\\') {
                last = lines.next().expect("a continued line").to_string();
                command.push('\n');
                command.push_str(&last);
            }
            if command.contains("<<'EOF'") {
                for body in lines.by_ref() {
                    command.push('\n');
                    command.push_str(body);
                    if body == "EOF" {
                        break;
                    }
                }
            }
            out.push(Example {
                command,
                shown: Vec::new(),
            });
        } else if let Some(e) = out.last_mut() {
            e.shown.push(line.to_string());
        }
    }
    out
}

#[test]
#[cfg(unix)]
fn signing_and_crypto_examples_print_what_the_readme_shows() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let list = examples(
        &readme,
        "The examples in this section use the test key",
        "### Single sign-on",
    );
    assert!(list.len() >= 15, "{} examples found", list.len());
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_csm")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut checked = 0;
    for e in &list {
        // `csm` from this build, by name, as the README writes it.
        let o = crate::common::user(Command::new("sh"), &dir.path().join("config"))
            .args(["-c", &e.command])
            .env("PATH", &path)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        // A FAIL verdict exits 1 on purpose; anything else is an example that went wrong.
        let verdict = e.shown.first().is_some_and(|l| l.starts_with("FAIL:"));
        assert_eq!(
            o.status.code(),
            Some(if verdict { 1 } else { 0 }),
            "{}\n{stderr}",
            e.command
        );
        if e.shown.is_empty() {
            // Setup, or an output the README describes in a comment instead.
            continue;
        }
        let got: Vec<&str> = got.lines().collect();
        if e.command.contains("output shortened") {
            // Each line shown, in order; `…` stands for lines left out.
            let mut at = 0;
            for want in e.shown.iter().filter(|l| l.trim() != "…") {
                match got[at..].iter().position(|g| g == want) {
                    Some(k) => at += k + 1,
                    None => panic!(
                        "{}\nmissing {want:?} in:\n{}\n{stderr}",
                        e.command,
                        got.join("\n")
                    ),
                }
            }
        } else {
            assert_eq!(got, e.shown, "{}\n{stderr}", e.command);
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} outputs compared");
}
