//! Inputs in the forms users bring them: a secret on standard input, a value copied from a
//! URL or with spaces around it, a key file of the wrong kind, a file Notepad saved with a
//! byte order mark, a code wrapped across lines.

use assert_cmd::Command;
use std::path::PathBuf;

/// The access key of the V1 crypto vectors, and what it makes of "admin" with the IV below.
const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
const IV: &str = "A1b2C3d4E5f6G7h8";
const ADMIN_AES128: &str = "A1b2C3d4E5f6G7h8gunXaFVLYwDgiWhVqy+HVw==";
const BOM: &str = "\u{feff}";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let e = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        e.write("basic.key", &format!("{KEY}\n"));
        e
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Runs csm in the directory, `stdin` on its standard input; (exit code, stdout, stderr).
    fn run_with(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut c = Command::from_std(crate::common::csm(self.dir.path()));
        c.current_dir(self.dir.path())
            .timeout(std::time::Duration::from_secs(60));
        if let Some(s) = stdin {
            c.write_stdin(s.to_string());
        }
        let out = c.args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(args, None)
    }

    /// `csm license keygen --out NAME` and a full code from it, in `code.txt` too.
    fn license(&self, name: &str) -> String {
        let (c, _, err) = self.run(&["license", "keygen", "--out", name]);
        assert_eq!(c, 0, "{err}");
        let (c, out, err) = self.run(&gen(name, &["--expires", "never"]));
        assert_eq!(c, 0, "{err}");
        let code = out.trim().to_string();
        self.write("code.txt", &format!("{code}\n"));
        code
    }
}

/// `csm license gen` of product P, SKU S for customer C with the private key `key`, and
/// `extra`.
fn gen<'a>(key: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "license",
        "gen",
        "--private-key",
        key,
        "--product",
        "P",
        "--sku",
        "S",
        "--customer",
        "C",
    ];
    args.extend_from_slice(extra);
    args
}

fn crypto(action: &str, value: &str) -> Vec<String> {
    let args = [
        "crypto",
        action,
        "--key-file",
        "basic.key",
        "--encrypt-type",
        "2",
    ];
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    if action == "encrypt" {
        v.extend(["--iv".to_string(), IV.to_string()]);
    }
    v.extend(["--".to_string(), value.to_string()]);
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn crypto_reads_a_dash_value_from_standard_input() {
    let e = Env::new();
    // The secret comes on standard input, one trailing newline dropped, as in a key file.
    let (c, out, err) = e.run_with(&strs(&crypto("encrypt", "-")), Some("admin\n"));
    assert_eq!((c, out.trim()), (0, ADMIN_AES128), "{err}");
    assert!(!err.contains("admin"), "{err}");
    let (c, out, err) = e.run_with(&strs(&crypto("decrypt", "-")), Some(ADMIN_AES128));
    assert_eq!((c, out.trim()), (0, "admin"), "{err}");
    // Standard input is read once: a key from it too is refused, naming the value.
    let mut both = crypto("decrypt", "-");
    both[3] = "-".into();
    let (c, _, err) = e.run_with(&strs(&both), Some(&format!("{ADMIN_AES128}\n")));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("standard input is taken by VALUE"), "{err}");
    let (c, _, err) = e.run_with(&strs(&crypto("encrypt", "-")), Some(""));
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("VALUE -: standard input is empty"), "{err}");
    for action in ["encrypt", "decrypt"] {
        let (c, out, _) = e.run(&["crypto", action, "--help"]);
        assert_eq!(c, 0);
        assert!(out.contains("`-` reads it from standard input"), "{out}");
    }
}

#[test]
fn decrypt_takes_a_value_with_spaces_or_url_encoded() {
    let e = Env::new();
    for value in [format!("  {ADMIN_AES128} \n"), format!("\t{ADMIN_AES128}")] {
        let (c, out, err) = e.run(&strs(&crypto("decrypt", &value)));
        assert_eq!((c, out.trim()), (0, "admin"), "{value:?}: {err}");
        assert!(err.is_empty(), "{err}");
    }
    // As copied from a URL or an access log: `+` and `=` escaped.
    let encoded = ADMIN_AES128.replace('+', "%2B").replace('=', "%3D");
    let (c, out, err) = e.run(&strs(&crypto("decrypt", &encoded)));
    assert_eq!((c, out.trim()), (0, "admin"), "{err}");
    assert!(err.starts_with("csm: note: VALUE was URL-encoded"), "{err}");
    for quiet in ["-q", "--json"] {
        let mut args = vec![quiet.to_string()];
        args.extend(crypto("decrypt", &format!(" {encoded} ")));
        let (c, out, err) = e.run(&strs(&args));
        assert_eq!(c, 0, "{err}");
        assert!(
            out.contains("admin") && err.is_empty(),
            "{quiet}: {out}{err}"
        );
    }
}

#[test]
fn decrypt_with_the_other_encrypt_type_says_which_one_works() {
    let e = Env::new();
    let mut args = crypto("decrypt", ADMIN_AES128);
    args[5] = "1".into();
    let (c, out, err) = e.run(&strs(&args));
    assert_eq!(c, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("does not decrypt with encryptType 1"), "{err}");
    assert!(
        err.contains("hint: it decrypts with --encrypt-type 2"),
        "{err}"
    );
    assert!(!err.contains("admin"), "{err}");
    // A value neither type decrypts gets no such hint.
    let (c, _, err) = e.run(&strs(&crypto(
        "decrypt",
        "A1b2C3d4E5f6G7h8AAAAAAAAAAAAAAAAAAAAAA==",
    )));
    assert_eq!(c, 1, "{err}");
    assert!(!err.contains("hint:"), "{err}");
}

#[test]
fn a_key_file_of_another_kind_given_as_public_key_is_named() {
    let e = Env::new();
    e.license("k");
    let short = e.read("k.short");
    let secret = short.trim().rsplit(':').next().unwrap().to_string();
    let (c, out, err) = e.run(&["license", "validate", "code.txt", "--public-key", "k.short"]);
    assert_eq!(c, 2, "{out}{err}");
    assert!(!err.contains("unknown-key-id"), "{err}");
    assert!(
        err.contains(
            "--public-key k.short: not a csm public key file: this is a short-code secret"
        ),
        "{err}"
    );
    assert!(err.contains("pass it with --short-secret"), "{err}");
    assert!(
        !format!("{out}{err}").contains(&secret),
        "secret leaked: {err}"
    );
    // An RSA key of `csm crypto rsa-keygen`, and a public key without its prefix.
    let (c, _, err) = e.run(&["crypto", "rsa-keygen", "--out", "app.pem"]);
    assert_eq!(c, 0, "{err}");
    let public = e.read("k.pub");
    e.write("bare.pub", public.trim().rsplit(':').next().unwrap());
    for (file, says) in [
        ("app.pem.pub", "this is a PEM key"),
        (
            "bare.pub",
            "without its csm-license-public-key:<key id>: prefix",
        ),
    ] {
        let (c, _, err) = e.run(&["license", "validate", "code.txt", "--public-key", file]);
        assert_eq!(c, 2, "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
    }
    // A keyring of the public key with its short secret beside it is still a keyring.
    e.write("ring.pub", &format!("{public}{short}"));
    let (c, out, err) = e.run(&[
        "license",
        "validate",
        "code.txt",
        "--public-key",
        "ring.pub",
    ]);
    assert_eq!(c, 0, "{out}{err}");
    // Two marketplace codes on two lines are two codes, not one joined.
    e.write("two.txt", "PL0000000001\nPL0000000002\n");
    let (c, out, err) = e.run(&["license", "inspect", "two.txt"]);
    assert_ne!(c, 0, "{out}{err}");
    assert!(!out.contains("PL0000000001PL0000000002"), "{out}");
    // The other way round: a public key given as the short secret.
    let (c, _, err) = e.run(&["license", "validate", "code.txt", "--short-secret", "k.pub"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("this is a public key"), "{err}");
    assert!(err.contains("pass it with --public-key"), "{err}");
}

#[test]
fn license_files_saved_with_a_byte_order_mark_are_read() {
    let e = Env::new();
    let code = e.license("k");
    for name in ["k", "k.pub", "code.txt"] {
        let text = e.read(name);
        e.write(&format!("bom-{name}"), &format!("{BOM}{text}"));
    }
    let (c, out, err) = e.run(&gen("bom-k", &["--expires", "never"]));
    assert_eq!(c, 0, "{err}");
    let again = out.trim();
    let (c, out, err) = e.run(&[
        "license",
        "validate",
        "bom-code.txt",
        "--public-key",
        "bom-k.pub",
    ]);
    assert_eq!((c, out.trim()), (0, "valid: does not expire"), "{err}");
    let (c, _, err) = e.run(&["license", "validate", again, "--public-key", "k.pub"]);
    assert_eq!(c, 0, "{err}");
    // Standard input too, and a revocation list.
    let (c, _, err) = e.run_with(
        &["license", "validate", "-", "--public-key", "k.pub"],
        Some(&format!("{BOM}{code}\r\n")),
    );
    assert_eq!(c, 0, "{err}");
    e.write("revoked.txt", &format!("{BOM}{code}\n"));
    let (c, _, err) = e.run(&[
        "license",
        "validate",
        "code.txt",
        "--public-key",
        "k.pub",
        "--revoked",
        "revoked.txt",
    ]);
    assert_eq!(c, 1, "{err}");
    assert!(err.contains("revoked"), "{err}");
}

#[test]
fn a_code_wrapped_across_lines_or_grouped_with_spaces_is_read_as_one() {
    let e = Env::new();
    let code = e.license("k");
    assert!(code.len() > 120, "{code}");
    let wrapped = format!("{}\n{}\n", &code[..100], &code[100..]);
    e.write("wrapped.txt", &wrapped);
    let spaced = code.replace('-', " ");
    let crlf = format!("{}\r\n  {}", &code[..61], &code[61..]);
    for (what, input) in [
        ("wrapped file", "wrapped.txt"),
        ("spaced", spaced.as_str()),
        ("wrapped argument", crlf.as_str()),
    ] {
        let (c, out, err) = e.run(&["license", "validate", input, "--public-key", "k.pub"]);
        assert_eq!(
            (c, out.trim()),
            (0, "valid: does not expire"),
            "{what}: {err}"
        );
        let (c, out, err) = e.run(&["--json", "license", "inspect", input]);
        assert_eq!(c, 0, "{what}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (&v["form"], &v["customer"]),
            (&"code".into(), &"C".into()),
            "{what}: {v}"
        );
    }
    // Two codes on two lines are not one code: the message says how the lines were read.
    e.write("two.txt", &format!("{code}\n{code}\n"));
    let (c, _, err) = e.run(&["license", "validate", "two.txt", "--public-key", "k.pub"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains("give one code at a time"), "{err}");
    // A typo in a wrapped code is still found at its place in the text as given.
    let at = code[101..].find(|c: char| c.is_ascii_digit()).unwrap() + 101;
    let mut typo = wrapped.clone().into_bytes();
    let pos = at + 1; // the line break before it
    typo[pos] = if typo[pos] == b'7' { b'8' } else { b'7' };
    e.write("typo.txt", std::str::from_utf8(&typo).unwrap());
    let (c, _, err) = e.run(&["license", "validate", "typo.txt", "--public-key", "k.pub"]);
    assert_eq!(c, 2, "{err}");
    assert!(err.contains(&format!("position {}", pos + 1)), "{err}");
}

#[test]
fn a_bad_expires_names_never() {
    let e = Env::new();
    e.license("k");
    for (value, says) in [
        (
            "tomorrow",
            "\"tomorrow\": must be a date YYYY-MM-DD or RFC 3339 time (UTC), or never",
        ),
        (
            "2200-01-01",
            "the range a license can carry; never for no end",
        ),
    ] {
        let (c, _, err) = e.run(&gen("k", &["--expires", value]));
        assert_eq!(c, 2, "{err}");
        assert!(err.starts_with("csm: error: --expires "), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // --issued takes no `never`, and its message does not offer it.
    let (c, _, err) = e.run(&gen("k", &["--issued", "soon", "--expires", "never"]));
    assert_eq!(c, 2, "{err}");
    assert!(!err.contains("never"), "{err}");
}
