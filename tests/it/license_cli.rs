//! `csm license keygen|gen|inspect|validate` as a user runs them: files, exit codes, messages.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn csm(&self) -> Command {
        let mut c = Command::from_std(crate::common::csm(self.dir.path()));
        c.current_dir(self.dir.path())
            .timeout(std::time::Duration::from_secs(60));
        c
    }

    /// Runs csm; returns (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.csm().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn keygen(&self, name: &str) -> String {
        let (code, out, err) = self.run(&["license", "keygen", "--out", name]);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    }

    fn gen(&self, key: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "license",
            "gen",
            "--private-key",
            key,
            "--product",
            "OFFI1",
            "--sku",
            "basic",
            "--customer",
            "cust-1",
            "--issued",
            "2026-01-01",
            "--expires",
            "2026-12-31",
            "--grace-days",
            "10",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = self.run(&args);
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    }
}

fn private_seed(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim().rsplit(':').next().unwrap().to_string()
}

#[test]
fn keygen_writes_a_private_file_0600_and_prints_only_the_public_key() {
    let e = Env::new();
    let public = e.keygen("k");
    assert!(public.starts_with("csm-license-public-key:"), "{public}");
    assert_eq!(
        std::fs::read_to_string(e.path("k.pub")).unwrap().trim(),
        public
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["k", "k.short"] {
            let mode = std::fs::metadata(e.path(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    // The short-code secret is its own random secret, not derived from the private key.
    let short = std::fs::read_to_string(e.path("k.short")).unwrap();
    assert!(short.starts_with("csm-license-short-secret:"), "{short}");
    assert_ne!(private_seed(&e.path("k.short")), private_seed(&e.path("k")));
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    // Refuses to overwrite.
    let (code, _, err) = e.run(&["license", "keygen", "--out", "k"]);
    assert_eq!(code, 2);
    assert!(err.contains("--force"), "{err}");
}

#[test]
fn the_private_key_never_appears_in_any_output() {
    let e = Env::new();
    e.keygen("k");
    let seed = private_seed(&e.path("k"));
    let code = e.gen("k", &[]);
    let mut outputs = vec![code.clone()];
    for args in [
        vec!["license", "keygen", "--out", "k2", "--json"],
        vec!["license", "validate", &code, "--public-key", "k.pub"],
        vec![
            "license",
            "validate",
            &code,
            "--short-secret",
            "k.short",
            "--public-key",
            "k.pub",
            "--json",
        ],
        vec!["license", "validate", "k.short", "--public-key", "k.pub"],
        vec!["license", "validate", &code, "--short-secret", "k"],
        vec!["license", "inspect", &code],
        vec!["license", "inspect", "k"],
        vec!["license", "validate", "k", "--public-key", "k.pub"],
        vec![
            "license",
            "gen",
            "--private-key",
            "k.pub",
            "--product",
            "P",
            "--sku",
            "S",
            "--customer",
            "C",
            "--expires",
            "never",
        ],
        vec!["license", "keygen", "--help"],
    ] {
        let (_, out, err) = e.run(&args);
        outputs.push(out);
        outputs.push(err);
    }
    let seed2 = private_seed(&e.path("k2"));
    let short = private_seed(&e.path("k.short"));
    let short2 = private_seed(&e.path("k2.short"));
    for o in &outputs {
        assert!(!o.contains(&seed), "private key leaked: {o}");
        assert!(!o.contains(&seed2), "private key leaked: {o}");
        assert!(!o.contains(&short), "short secret leaked: {o}");
        assert!(!o.contains(&short2), "short secret leaked: {o}");
    }
}

#[test]
fn verdicts_and_exit_codes() {
    let e = Env::new();
    e.keygen("k");
    e.keygen("other");
    let code = e.gen("k", &[]);
    let check = |extra: &[&str], want_code: i32, want: &str| {
        let mut args = vec![
            "license",
            "validate",
            code.as_str(),
            "--public-key",
            "k.pub",
        ];
        args.extend_from_slice(extra);
        let (c, out, err) = e.run(&args);
        assert_eq!(c, want_code, "{extra:?}: {out}{err}");
        assert!(
            out.starts_with(want) || err.contains(&format!(": {want}")),
            "{extra:?}: {out}{err}"
        );
    };
    check(&["--at", "2026-06-01"], 0, "valid:");
    check(&["--at", "2027-01-05"], 0, "valid-in-grace:");
    check(&["--at", "2027-01-11"], 6, "expired:");
    check(&["--at", "2025-12-31"], 6, "not-yet-valid:");
    check(
        &["--at", "2026-06-01", "--product", "OFFI2"],
        1,
        "wrong-product:",
    );
    check(&["--at", "2026-06-01", "--product", "OFFI1"], 0, "valid:");
    // Unknown key id: only another key is trusted.
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        &code,
        "--public-key",
        "other.pub",
        "--at",
        "2026-06-01",
    ]);
    assert_eq!(c, 1);
    assert!(err.contains("unknown-key-id"), "{err}");
    // Rotation: both keys trusted, the old code is still valid.
    let (c, out, _) = e.run(&[
        "license",
        "validate",
        &code,
        "--public-key",
        "other.pub",
        "k.pub",
        "--at",
        "2026-06-01",
    ]);
    assert_eq!(c, 0, "{out}");
    // Revocation by license id (from inspect --json).
    let (_, out, _) = e.run(&["license", "inspect", &code, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["product"], "OFFI1");
    assert_eq!(v["signature"], "not checked");
    let id = v["license_id"].as_str().unwrap().to_string();
    std::fs::write(e.path("revoked.txt"), format!("# withdrawn\n{id}\n")).unwrap();
    check(
        &["--at", "2026-06-01", "--revoked", "revoked.txt"],
        1,
        "revoked:",
    );
    // --json carries the verdict and the exit code.
    let (c, out, _) = e.run(&[
        "license",
        "validate",
        &code,
        "--public-key",
        "k.pub",
        "--at",
        "2027-02-01",
        "--json",
    ]);
    assert_eq!(c, 6);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "expired");
    assert_eq!(v["exit_code"], 6);
    assert_eq!(v["license"]["customer"], "cust-1");
}

#[test]
fn a_typo_is_reported_with_its_position_and_the_meant_symbol() {
    let e = Env::new();
    e.keygen("k");
    let code = e.gen("k", &[]);
    let mut chars: Vec<char> = code.chars().collect();
    let i = 13; // a data symbol (positions 6, 12, ... are dashes)
    let original = chars[i];
    chars[i] = if original == 'X' { 'Y' } else { 'X' };
    let typo: String = chars.into_iter().collect();
    let (c, _, err) = e.run(&["license", "validate", &typo, "--public-key", "k.pub"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains(&format!("position {}", i + 1)), "{err}");
    assert!(err.contains(&format!("should be {original:?}")), "{err}");
}

/// The words of a command line (none of them has a space).
fn words(line: &str) -> Vec<&str> {
    line.split(' ').collect()
}

/// How a person might type `code`: lower case, 1 as i or l, 0 as o, groups of four.
fn retype(code: &str) -> String {
    let symbols = code.chars().filter(|&c| c != '-');
    let mut out = String::new();
    for (k, c) in symbols.enumerate() {
        if k > 0 && k % 4 == 0 {
            out.push('-');
        }
        out.push(match c {
            '1' if k % 2 == 0 => 'i',
            '1' => 'l',
            '0' => 'o',
            c => c.to_ascii_lowercase(),
        });
    }
    out
}

/// Crockford reads either case, I and L as 1, O as 0, and ignores hyphens: a code typed that
/// way gets the verdict and fields of the code as printed.
#[test]
fn codes_typed_in_lower_case_with_aliases_validate_the_same() {
    let e = Env::new();
    e.keygen("k");
    let full = e.gen("k", &[]);
    let gen_short = "license gen --short --private-key k --product OFFI1 --issued 2026-01-01 --expires 2026-12-31";
    let (c, short, err) = e.run(&words(gen_short));
    assert_eq!(c, 0, "{err}");
    for (code, keys) in [
        (full.as_str(), "--public-key k.pub"),
        (short.trim(), "--short-secret k.short"),
    ] {
        let typed = retype(code);
        assert!(typed.contains('o') && typed.contains('l'), "{typed}");
        let validate = |c: &str| {
            let mut args = words("--json license validate --at 2026-06-01");
            args.push(c);
            args.extend(words(keys));
            e.run(&args)
        };
        let (c1, want, err) = validate(code);
        assert_eq!(c1, 0, "{err}");
        let (c2, got, err) = validate(&typed);
        assert_eq!(c2, 0, "{typed}: {err}");
        let want: serde_json::Value = serde_json::from_str(&want).unwrap();
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got["verdict"], "valid", "{got}");
        assert_eq!(got, want);
    }
}

/// The flags a form needs are shown as needed: in the usage line and in their help.
#[test]
fn gen_help_shows_the_required_flags() {
    let e = Env::new();
    let (c, out, err) = e.run(&words("license gen --help"));
    assert_eq!(c, 0, "{err}");
    let usage = out.lines().find(|l| l.starts_with("Usage: ")).unwrap();
    let required = "--private-key <FILE>|--product <P>|--sku <S>|--customer <C>|--expires <DATE>";
    for flag in required.split('|') {
        assert!(usage.contains(flag), "{usage}");
        assert!(!usage.contains(&format!("[{flag}]")), "{usage}");
    }
    for flag in ["--sku <S>", "--customer <C>"] {
        let help = out.lines().find(|l| l.trim_start().starts_with(flag));
        let help = help.unwrap();
        assert!(help.contains("required, except with --short"), "{help}");
    }
    // Leaving them out is refused as before, naming both.
    let (c, _, err) = e.run(&words(
        "license gen --private-key k --product P --expires never",
    ));
    assert_eq!(c, 2, "{err}");
    let missing = "error: the following required arguments were not provided:\n  --sku <S>\n  --customer <C>\n";
    assert!(err.starts_with(missing), "{err}");
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let e = Env::new();
    e.keygen("k");
    let code = e.gen("k", &[]);
    std::fs::write(e.path("notes.txt"), "these are my notes\nnot a license\n").unwrap();
    std::fs::write(e.path("data.json"), "{\"hello\": 1}").unwrap();
    std::fs::write(e.path("blob.bin"), [0u8, 159, 146, 150, 255, 0, 1]).unwrap();
    let huge = "A".repeat(100_000);
    std::fs::write(e.path("huge.txt"), "A".repeat(300_000)).unwrap();
    let truncated = code[..code.len() - 7].to_string();
    let cases: Vec<(&str, &str, &str)> = vec![
        ("empty", "", "empty"),
        ("whitespace", "  \t ", "whitespace"),
        (
            "marketplace code in lower case",
            "plabcdef123",
            "not an upper-case letter",
        ),
        ("wrong alphabet", "ABCDE-FGH!K", "not a code symbol"),
        ("letter U", "ABCDE-FGHUK", "not a code symbol"),
        ("truncated", &truncated, "truncated"),
        ("truncated at a dash", &code[..30], "truncated"),
        ("huge", &huge, "too long"),
        ("huge file", "huge.txt", "larger than"),
        ("text file", "notes.txt", "not a license"),
        ("json file", "data.json", "not a license file"),
        ("binary file", "blob.bin", "binary"),
        ("marketplace code", "PLABCDEF123", "marketplace code"),
    ];
    for (what, input, needle) in cases {
        let (c, out, err) = e.run(&["license", "validate", input, "--public-key", "k.pub"]);
        assert_eq!(c, 2, "{what}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(err.len() < 400, "{what}: message too long: {}", err.len());
        // inspect decodes a marketplace code (shape only); everything else is refused.
        let (c, _, err) = e.run(&["license", "inspect", input]);
        let want = if what == "marketplace code" { 0 } else { 2 };
        assert_eq!(c, want, "inspect {what}: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    // Truncated anywhere: always malformed, and the message says it may be truncated.
    for cut in 1..=12 {
        let t = &code[..code.len() - cut];
        let (c, _, err) = e.run(&["license", "validate", t, "--public-key", "k.pub"]);
        assert_eq!(c, 2, "cut {cut}: {err}");
        assert!(err.contains("truncated"), "cut {cut}: {err}");
    }
    // A key file that is not a key.
    let (c, _, err) = e.run(&["license", "validate", &code, "--public-key", "notes.txt"]);
    assert_eq!(c, 2);
    assert!(err.contains("--public-key"), "{err}");
    // A missing license file.
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        "./missing.json",
        "--public-key",
        "k.pub",
    ]);
    assert_eq!(c, 3, "{err}");
    // Bad dates name the flag.
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        &code,
        "--public-key",
        "k.pub",
        "--at",
        "tomorrow",
    ]);
    assert_eq!(c, 2);
    assert!(err.contains("--at"), "{err}");
}

#[test]
fn license_files_short_codes_batches_and_marketplace_codes() {
    let e = Env::new();
    e.keygen("k");
    // License file: written, validated, and refused once edited.
    let file = e.gen("k", &["--file", "--features", "a,b"]);
    std::fs::write(e.path("lic.json"), &file).unwrap();
    let (c, out, err) = e.run(&[
        "license",
        "validate",
        "lic.json",
        "--public-key",
        "k.pub",
        "--at",
        "2026-03-01",
    ]);
    assert_eq!(c, 0, "{out}{err}");
    std::fs::write(e.path("lic.json"), file.replace("cust-1", "cust-2")).unwrap();
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        "lic.json",
        "--public-key",
        "k.pub",
        "--at",
        "2026-03-01",
    ]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("bad-signature"), "{err}");

    // Short code: fits 64 characters, is checked with the short secret (k.short), which is
    // not the private key.
    let (c, short, err) = e.run(&[
        "license",
        "gen",
        "--private-key",
        "k",
        "--short",
        "--product",
        "OFFI1",
        "--issued",
        "2026-01-01",
        "--expires",
        "2026-12-31",
        "--grace-days",
        "10",
    ]);
    assert_eq!(c, 0, "{err}");
    let short = short.trim().to_string();
    assert!(short.len() <= 64, "{short}");
    let (c, out, err) = e.run(&[
        "license",
        "validate",
        &short,
        "--public-key",
        "k.pub",
        "--at",
        "2026-03-01",
        "--json",
    ]);
    assert_eq!(c, 3, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "short-secret-needed", "{v}");
    assert_eq!(v["exit_code"], 3, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("--short-secret"),
        "{v}"
    );
    let (c, out, err) = e.run(&[
        "license",
        "validate",
        &short,
        "--short-secret",
        "k.short",
        "--at",
        "2026-03-01",
        "--product",
        "OFFI1",
    ]);
    assert_eq!(c, 0, "{out}{err}");
    // The private key is not a short secret.
    let (c, _, err) = e.run(&["license", "validate", &short, "--short-secret", "k"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("not a csm short-secret file"), "{err}");
    // Another key pair's short secret: unknown key id, as for rotated-out public keys.
    e.keygen("other");
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        &short,
        "--short-secret",
        "other.short",
        "--at",
        "2026-03-01",
    ]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("unknown-key-id"), "{err}");
    // gen --short with only the short secret (no private key) gives a code it validates.
    let (c, out, err) = e.run(&[
        "license",
        "gen",
        "--short",
        "--short-secret",
        "other.short",
        "--product",
        "P",
        "--expires",
        "never",
    ]);
    assert_eq!(c, 0, "{err}");
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        out.trim(),
        "--short-secret",
        "other.short",
    ]);
    assert_eq!(c, 0, "{err}");

    // Batches: CSV and JSON lines, every code distinct and valid.
    let (c, out, err) = e.run(&[
        "license",
        "gen",
        "--private-key",
        "k",
        "--product",
        "P",
        "--sku",
        "S",
        "--customer",
        "C",
        "--expires",
        "never",
        "--count",
        "5",
        "--out",
        "batch.csv",
    ]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(out.trim(), "wrote 5 license(s) to batch.csv", "{out}");
    let mut rd = csv::Reader::from_path(e.path("batch.csv")).unwrap();
    let codes: Vec<String> = rd
        .records()
        .map(|r| r.unwrap().get(11).unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 5);
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), 5);
    for code in &codes {
        let (c, out, err) = e.run(&["license", "validate", code, "--public-key", "k.pub"]);
        assert_eq!(c, 0, "{out}{err}");
    }
    let (c, _, err) = e.run(&[
        "license",
        "gen",
        "--private-key",
        "k",
        "--product",
        "P",
        "--sku",
        "S",
        "--customer",
        "C",
        "--expires",
        "never",
        "--count",
        "3",
        "--out",
        "batch.jsonl",
    ]);
    assert_eq!(c, 0, "{err}");
    let text = std::fs::read_to_string(e.path("batch.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 3);
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["code"].as_str().unwrap().len() > 100);
        assert_eq!(v["expires"], "never");
    }

    // Marketplace-shaped codes.
    let (c, out, _) = e.run(&["license", "gen", "--marketplace", "--count", "3"]);
    assert_eq!(c, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    for l in lines {
        assert!(l.starts_with("PL") && l.len() <= 64, "{l}");
        assert!(l[2..]
            .chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()));
    }
}

#[test]
fn gen_refuses_bad_fields_with_the_flag_named() {
    let e = Env::new();
    e.keygen("k");
    for (args, needle) in [
        (vec!["--expires", "31/12/2026"], "--expires"),
        (
            vec!["--expires", "2026-01-01", "--issued", "2026-02-01"],
            "before the issue date",
        ),
        (vec!["--expires", "never", "--count", "0"], "--count"),
    ] {
        let mut a = vec![
            "license",
            "gen",
            "--private-key",
            "k",
            "--product",
            "P",
            "--sku",
            "S",
            "--customer",
            "C",
        ];
        a.extend(args);
        let (c, out, err) = e.run(&a);
        assert_eq!(c, 2, "{out}{err}");
        assert!(err.contains(needle), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    let (c, _, err) = e.run(&[
        "license",
        "gen",
        "--short",
        "--private-key",
        "k",
        "--product",
        "P",
        "--expires",
        "never",
        "--seats",
        "70000",
    ]);
    assert_eq!(c, 2);
    assert!(err.contains("--seats 70000"), "{err}");
}

#[test]
fn inspect_checks_the_signature_only_with_a_key_and_reads_stdin() {
    let e = Env::new();
    e.keygen("k");
    e.keygen("other");
    let code = e.gen("k", &["--features", "export,sso", "--seats", "7"]);
    let json = |args: &[&str]| -> serde_json::Value {
        let (c, out, err) = e.run(args);
        assert_eq!(c, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let v = json(&[
        "license",
        "inspect",
        &code,
        "--json",
        "--public-key",
        "k.pub",
    ]);
    assert_eq!(v["signature"], "good");
    assert_eq!(v["features"], serde_json::json!(["export", "sso"]));
    assert_eq!(v["seats"], 7);
    assert_eq!(v["form"], "code");
    let v = json(&[
        "license",
        "inspect",
        &code,
        "--json",
        "--public-key",
        "other.pub",
    ]);
    assert!(
        v["signature"]
            .as_str()
            .unwrap()
            .starts_with("unknown-key-id"),
        "{v}"
    );
    // `-` reads the code from standard input.
    let out = e
        .csm()
        .args([
            "license",
            "validate",
            "-",
            "--public-key",
            "k.pub",
            "--at",
            "2026-05-05",
        ])
        .write_stdin(format!("{code}\n"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid:"));
}

#[test]
fn gen_refuses_flags_its_form_does_not_carry_and_reports_what_the_code_holds() {
    let e = Env::new();
    e.keygen("k");
    let base = [
        "license",
        "gen",
        "--private-key",
        "k",
        "--product",
        "P",
        "--expires",
        "never",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        e.run(&args)
    };
    // A short code has no room for these: refused, not silently dropped.
    for extra in [
        &["--short", "--sku", "S", "--customer", "C"][..],
        &["--short", "--features", "a,b"][..],
        // --format only chooses the batch file's format.
        &["--sku", "S", "--customer", "C", "--format", "csv"][..],
    ] {
        let (c, out, err) = run(extra);
        assert_eq!(c, 2, "{extra:?}: {out}{err}");
        assert!(out.is_empty(), "{extra:?}: {out}");
        let named = if extra.contains(&"--format") {
            "required arguments were not provided:\n  --out"
        } else {
            "'--short' cannot be used with"
        };
        assert!(err.contains(named), "{extra:?}: {err}");
    }
    // Marketplace-shaped codes are unsigned and carry none of the license fields.
    for extra in [
        &["--product", "X"][..],
        &["--features", "z"][..],
        &["--seats", "4"][..],
    ] {
        let mut args = vec!["license", "gen", "--marketplace"];
        args.extend_from_slice(extra);
        let (c, out, err) = e.run(&args);
        assert_eq!(c, 2, "{extra:?}: {out}{err}");
        assert!(err.contains("cannot be used with"), "{extra:?}: {err}");
        assert!(err.contains(extra[0]), "{extra:?}: {err}");
    }
    // What --json and the CSV batch report for short codes is what the code carries.
    let (c, out, err) = run(&["--short", "--seats", "7", "--json"]);
    assert_eq!(c, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["seats"], 7, "{v}");
    for absent in ["sku", "customer", "features", "product"] {
        assert!(v.get(absent).is_none(), "{absent} reported: {v}");
    }
    let (c, inspected, err) = e.run(&["--json", "license", "inspect", v["code"].as_str().unwrap()]);
    assert_eq!(c, 0, "{err}");
    let i: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(i["serial"], v["serial"]);
    assert_eq!(i["product_digest"], v["product_digest"]);
    let (c, _, err) = run(&["--short", "--count", "2", "--out", "short.csv"]);
    assert_eq!(c, 0, "{err}");
    let mut rd = csv::Reader::from_path(e.path("short.csv")).unwrap();
    let headers: Vec<String> = rd.headers().unwrap().iter().map(str::to_string).collect();
    assert!(
        !headers
            .iter()
            .any(|h| h == "sku" || h == "customer" || h == "features"),
        "{headers:?}"
    );
    assert!(headers.iter().any(|h| h == "product_digest"), "{headers:?}");
    assert_eq!(rd.records().count(), 2);
}

#[test]
fn keygen_force_replaces_all_three_files_or_none() {
    let e = Env::new();
    e.keygen("k");
    let before: Vec<String> = ["k", "k.short"]
        .iter()
        .map(|f| std::fs::read_to_string(e.path(f)).unwrap())
        .collect();
    // The public key's place is taken by a directory: its rename would fail.
    std::fs::remove_file(e.path("k.pub")).unwrap();
    std::fs::create_dir(e.path("k.pub")).unwrap();
    let (c, out, err) = e.run(&["license", "keygen", "--out", "k", "--force"]);
    assert_eq!(c, 3, "{out}{err}");
    assert!(err.contains("k.pub"), "{err}");
    let after: Vec<String> = ["k", "k.short"]
        .iter()
        .map(|f| std::fs::read_to_string(e.path(f)).unwrap())
        .collect();
    assert_eq!(
        before, after,
        "the private key and short secret were replaced"
    );
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(e.dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp-")), "{names:?}");
}

#[test]
fn input_files_are_named_by_their_flag_and_key_files_are_small() {
    let e = Env::new();
    e.keygen("k");
    let code = e.gen("k", &[]);
    let (c, _, err) = e.run(&[
        "license",
        "gen",
        "--private-key",
        "nope",
        "--product",
        "P",
        "--sku",
        "S",
        "--customer",
        "C",
        "--expires",
        "never",
    ]);
    assert_eq!(c, 3, "{err}");
    assert!(err.starts_with("csm: error: --private-key nope:"), "{err}");
    let (c, _, err) = e.run(&["license", "validate", &code, "--public-key", "nope.pub"]);
    assert_eq!(c, 3, "{err}");
    assert!(
        err.starts_with("csm: error: --public-key nope.pub:"),
        "{err}"
    );
    let (c, _, err) = e.run(&["license", "validate", &code, "--short-secret", "nope.short"]);
    assert_eq!(c, 3, "{err}");
    assert!(
        err.starts_with("csm: error: --short-secret nope.short:"),
        "{err}"
    );
    // A key file is a line: 100 KiB is refused at the key-file limit (64 KiB).
    std::fs::write(e.path("big.pub"), "x".repeat(100 * 1024)).unwrap();
    let (c, _, err) = e.run(&["license", "validate", &code, "--public-key", "big.pub"]);
    assert_eq!(c, 2, "{err}");
    assert!(
        err.starts_with("csm: error: --public-key big.pub: larger than 65536 bytes"),
        "{err}"
    );
    // Standard input has the same limit as a license file.
    let out = e
        .csm()
        .args(["license", "inspect", "-"])
        .write_stdin("A".repeat(300 * 1024))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than 262144 bytes"), "{err}");
}

#[test]
fn a_private_key_given_as_public_key_works_with_a_warning() {
    let e = Env::new();
    e.keygen("k");
    let code = e.gen("k", &[]);
    let seed = private_seed(&e.path("k"));
    for (key, warned) in [("k", true), ("k.pub", false)] {
        let args = [
            "license",
            "validate",
            &code,
            "--public-key",
            key,
            "--product",
            "OFFI1",
            "--at",
            "2026-06-01",
        ];
        let (c, out, err) = e.run(&args);
        assert_eq!(c, 0, "{key}: {err}");
        assert!(out.contains("valid"), "{out}");
        let warning = format!("--public-key {key}: this is a private signing key");
        assert_eq!(err.contains(&warning), warned, "{key}: {err}");
        assert!(!err.contains(&seed) && !out.contains(&seed));
    }
}

#[test]
fn gen_out_never_replaces_a_key_file_and_other_files_only_with_force() {
    let e = Env::new();
    e.keygen("seller.key");
    std::fs::create_dir(e.path("sub")).unwrap();
    std::os::unix::fs::symlink("seller.key", e.path("link.csv")).unwrap();
    std::fs::hard_link(e.path("seller.key"), e.path("hard.csv")).unwrap();
    let keys: Vec<(&str, String)> = ["seller.key", "seller.key.pub", "seller.key.short"]
        .into_iter()
        .map(|f| (f, std::fs::read_to_string(e.path(f)).unwrap()))
        .collect();
    let full = [
        "license",
        "gen",
        "--private-key",
        "seller.key",
        "--product",
        "OFFI1",
        "--sku",
        "basic",
        "--customer",
        "c",
        "--expires",
        "2027-01-31",
        "--count",
        "2",
    ];
    let short = [
        "license",
        "gen",
        "--short",
        "--short-secret",
        "seller.key.short",
        "--product",
        "OFFI1",
        "--expires",
        "never",
    ];
    // The key file itself, its siblings, and the same file by another name: even --force.
    for (args, out, what) in [
        (&full[..], "seller.key", "the --private-key file"),
        (&full[..], "seller.key.pub", "the public key"),
        (&full[..], "seller.key.short", "the short secret"),
        (&full[..], "sub/../seller.key", "the --private-key file"),
        (&full[..], "link.csv", "the --private-key file"),
        (&full[..], "hard.csv", "the --private-key file"),
        (&short[..], "seller.key.short", "the --short-secret file"),
        (&short[..], "seller.key", "the private key"),
    ] {
        for force in [false, true] {
            let mut a = args.to_vec();
            a.extend(["--out", out]);
            if force {
                a.push("--force");
            }
            let (c, stdout, err) = e.run(&a);
            assert_eq!(c, 2, "{out} force={force}: {stdout}{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.starts_with(&format!("csm: error: --out {out}: is {what}")),
                "{out}: {err}"
            );
            assert!(err.contains("even with --force"), "{err}");
        }
    }
    // The keys named through links elsewhere: their siblings are where the keys are.
    std::fs::create_dir(e.path("links")).unwrap();
    std::os::unix::fs::symlink("../seller.key", e.path("links/lk")).unwrap();
    std::os::unix::fs::symlink("../seller.key.short", e.path("links/ls.short")).unwrap();
    let mut by_link = full.to_vec();
    by_link[3] = "links/lk";
    let mut short_by_link = short.to_vec();
    short_by_link[4] = "links/ls.short";
    for (args, out, what) in [
        (
            &by_link,
            "seller.key.pub",
            "the public key beside --private-key",
        ),
        (
            &by_link,
            "seller.key.short",
            "the short secret beside --private-key",
        ),
        (
            &short_by_link,
            "seller.key",
            "the private key beside --short-secret",
        ),
        (
            &short_by_link,
            "seller.key.pub",
            "the public key beside --short-secret",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--out", out, "--force"]);
        let (c, stdout, err) = e.run(&a);
        assert_eq!(c, 2, "{out}: {stdout}{err}");
        assert!(
            err.starts_with(&format!("csm: error: --out {out}: is {what}")),
            "{out}: {err}"
        );
    }
    for (f, text) in &keys {
        assert_eq!(&std::fs::read_to_string(e.path(f)).unwrap(), text, "{f}");
    }
    // An earlier batch: kept without --force, replaced with it.
    std::fs::write(e.path("batch.csv"), "an earlier batch\n").unwrap();
    let mut a = full.to_vec();
    a.extend(["--out", "batch.csv"]);
    let (c, _, err) = e.run(&a);
    assert_eq!(c, 2, "{err}");
    assert_eq!(
        err.trim(),
        "csm: error: --out batch.csv: the file exists; pass --force to replace it"
    );
    assert_eq!(
        std::fs::read_to_string(e.path("batch.csv")).unwrap(),
        "an earlier batch\n"
    );
    a.push("--force");
    let (c, _, err) = e.run(&a);
    assert_eq!(c, 0, "{err}");
    let text = std::fs::read_to_string(e.path("batch.csv")).unwrap();
    assert!(
        text.starts_with("license_id,") && text.lines().count() == 3,
        "{text}"
    );
    // A directory that is not there is named by the flag, and nothing is made.
    let mut a = full.to_vec();
    a.extend(["--out", "nodir/b.csv"]);
    let (c, _, err) = e.run(&a);
    assert_eq!(c, 3, "{err}");
    assert!(err.starts_with("csm: error: --out nodir/b.csv: "), "{err}");
    // --force means nothing without --out.
    let mut a = full.to_vec();
    a.push("--force");
    let (c, _, _) = e.run(&a);
    assert_eq!(c, 2);
}

#[test]
fn keygen_names_out_when_its_directory_is_missing() {
    let e = Env::new();
    let (c, out, err) = e.run(&["license", "keygen", "--out", "nodir/x.key"]);
    assert_eq!(c, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("csm: error: --out nodir/x.key: "), "{err}");
    assert!(out.is_empty(), "no key was made: {out}");
    assert!(!e.path("nodir").exists());
}

#[test]
fn validate_without_any_key_is_a_configuration_error() {
    let e = Env::new();
    e.keygen("k");
    let code = e.gen("k", &[]);
    let (c, out, err) = e.run(&["license", "validate", &code]);
    assert_eq!(c, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("csm: error: --public-key: no key given"),
        "{err}"
    );
}
