//! Profiles as users meet them: `csm init` on a terminal and without one, `~` in key file
//! paths, a profile whose key file is gone, a missing selected profile, a broken config.

use crate::common;
use std::path::{Path, PathBuf};
use std::process::Command;

const ENDPOINT: &str = "https://isv.example.com/produce";
const BODY: &str = r#"{"activity":"newInstance","testFlag":"1"}"#;

/// A home directory (also the config directory) with a basic key in `~/.keys/basic`, a Kit
/// key in `~/.keys/kit` and a callback body in `~/body.json`.
fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".keys")).unwrap();
    std::fs::write(dir.path().join(".keys/basic"), "basic-key-0000-1111\n").unwrap();
    std::fs::write(dir.path().join(".keys/kit"), "kit-key-0000-1111\n").unwrap();
    std::fs::write(dir.path().join("body.json"), BODY).unwrap();
    dir
}

/// `csm ARGS` in `home`, its working directory: exit code, stdout, stderr.
fn run(home: &Path, args: &[&str]) -> (i32, String, String) {
    run_with(home, args, &[])
}

fn run_with(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = common::csm(home);
    c.current_dir(home).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn config(home: &Path) -> String {
    std::fs::read_to_string(home.join("config.toml")).unwrap()
}

fn real(p: PathBuf) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

/// `csm ARGS` on a terminal (a pseudo-terminal of util-linux `script`), the `answers` typed
/// one by one, each ended by Enter: its exit code and all it printed (stdout and stderr
/// share the terminal). A run still waiting for an answer after 60 s fails the test.
#[cfg(target_os = "linux")]
fn on_a_terminal(home: &Path, args: &str, answers: &[&str]) -> (i32, String) {
    use std::io::Write;
    use std::process::Stdio;
    let line = format!("'{}' {args}", env!("CARGO_BIN_EXE_csm"));
    let mut script = common::user(Command::new("script"), home);
    script
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = script
        .spawn()
        .expect("util-linux `script` gives csm a terminal");
    let typed: String = answers.iter().map(|a| format!("{a}\r")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(o) => {
            let o = o.unwrap();
            (o.status.code().unwrap_or(-1), common::text(&o))
        }
        Err(_) => {
            common::signal(pid, "-KILL");
            panic!("csm {args} still waits for an answer after {answers:?}");
        }
    }
}

/// A wrong answer is said in the line its flag would get and asked again; the answers
/// before it are kept, and `~` in a key file's path is the home directory.
#[test]
#[cfg(target_os = "linux")]
fn init_on_a_terminal_asks_again_after_a_wrong_answer() {
    let h = home();
    let answers = [
        "ftp://x",
        ENDPOINT,
        "v3",
        "v2",
        "~/.keys/none",
        "~/.keys/basic",
        "~/.keys/kit",
        "",
        "",
        "",
        "",
    ];
    let (code, out) = on_a_terminal(h.path(), "init", &answers);
    assert_eq!(code, 0, "{out}");
    let missing = h.path().join(".keys/none");
    for said in [
        "csm: error: --endpoint \"ftp://x\": must be an http:// or https:// URL".to_string(),
        "csm: error: --protocol \"v3\": must be v1 or v2".to_string(),
        format!("csm: error: --key-file {}: ", missing.display()),
    ] {
        assert!(out.contains(&said), "{said}\n{out}");
    }
    let cfg = config(h.path());
    for line in [
        format!("endpoint = \"{ENDPOINT}\""),
        "protocol = \"v2\"".to_string(),
        format!("key_file = \"{}\"", real(h.path().join(".keys/basic"))),
        format!("kit_key_file = \"{}\"", real(h.path().join(".keys/kit"))),
    ] {
        assert!(cfg.contains(&line), "{line}\n{cfg}");
    }

    // A wrong flag stays an error on a terminal too: nothing is asked.
    let (code, out) = on_a_terminal(h.path(), "init --profile p --endpoint ftp://x", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--endpoint \"ftp://x\": must be"), "{out}");
    assert!(!out.contains("Protocol"), "{out}");
}

/// At a prompt for an optional setting that has a value, Enter keeps it and `-` clears it,
/// as the prompt says.
#[test]
#[cfg(target_os = "linux")]
fn init_on_a_terminal_clears_an_optional_setting_with_a_dash() {
    let h = home();
    let (code, _, err) = run(
        h.path(),
        &[
            "init",
            "--endpoint",
            ENDPOINT,
            "--protocol",
            "v2",
            "--key-file",
            ".keys/basic",
            "--kit-key-file",
            ".keys/kit",
            "--ak",
            "AK0001",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // endpoint, protocol, key file, kit key file, license key file, AK, SK file, marketplace
    let answers = ["", "", "", "-", "", "-", "", ""];
    let (code, out) = on_a_terminal(h.path(), "init", &answers);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Kit key file (Enter keeps, - clears)"),
        "{out}"
    );
    assert!(out.contains("License key file (empty: none)"), "{out}");
    let cfg = config(h.path());
    assert!(
        cfg.contains("key_file = ") && !cfg.contains("kit_key_file") && !cfg.contains("ak ="),
        "{cfg}"
    );
}

/// In config.toml `~/` is the home directory; a flag's path is taken as the shell left it.
#[test]
fn tilde_in_a_profile_key_file_is_the_home_directory() {
    let h = home();
    std::fs::write(
        h.path().join("config.toml"),
        format!(
            "[profiles.t]\nendpoint = \"{ENDPOINT}\"\nprotocol = \"v2\"\nkey_file = \"~/.keys/basic\"\nkit_key_file = \"~\"\n"
        ),
    )
    .unwrap();
    let sign = ["-q", "sign", "saas-v2", "--body-file", "body.json"];
    let fixed = ["--timestamp", "1680508066618", "--nonce", "N0"];
    let (code, by_profile, err) = run(
        h.path(),
        &[&["--profile", "t"], &sign[..], &fixed[..]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    let (code, by_flag, err) = run(
        h.path(),
        &[&sign[..], &fixed[..], &["--key-file", ".keys/basic"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(by_profile, by_flag);

    let (code, _, err) = run(
        h.path(),
        &[&sign[..], &["--key-file", "~/.keys/basic"]].concat(),
    );
    assert_eq!(code, 3);
    assert!(err.contains("--key-file ~/.keys/basic: "), "{err}");

    // `profile show` looks for the file where commands read it; a bare `~` is the home
    // directory itself (which is no key file, but exists).
    let (code, out, err) = run(h.path(), &["profile", "show", "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("~/.keys/basic\n") && !out.contains("(missing)"),
        "{out}"
    );
}

/// Without prompts, the error names only the flags missing, and why nothing is asked.
#[test]
fn init_without_prompts_names_only_the_missing_flags() {
    let h = home();
    let (code, _, err) = run(h.path(), &["init", "--no-input", "--endpoint", ENDPOINT]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "csm: error: csm init: missing --protocol v1|v2, --key-file FILE; --no-input (or CSM_NO_INPUT) forbids prompting for them\n"
    );
    let (code, _, err) = run_with(
        h.path(),
        &["init", "--protocol", "v2"],
        &[("CSM_NO_INPUT", "1")],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("missing --endpoint URL, --key-file FILE; --no-input (or CSM_NO_INPUT)"),
        "{err}"
    );
    // Standard input is no terminal here (and --no-input not given).
    let (code, _, err) = run(h.path(), &["init", "--key-file", ".keys/basic"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("missing --endpoint URL, --protocol v1|v2; there is no terminal"),
        "{err}"
    );
    assert!(!h.path().join("config.toml").exists());
}

/// A profile's key file that is gone is named with the profile and its config key.
#[test]
fn a_missing_profile_key_file_names_the_profile() {
    let h = home();
    std::fs::write(h.path().join("gone-key"), "gone-key-0000\n").unwrap();
    let init = [
        "init",
        "--profile",
        "gone",
        "--endpoint",
        ENDPOINT,
        "--protocol",
        "v2",
        "--key-file",
        "gone-key",
    ];
    assert_eq!(run(h.path(), &init).0, 0);
    let path = real(h.path().join("gone-key"));
    std::fs::remove_file(h.path().join("gone-key")).unwrap();
    let (code, _, err) = run(
        h.path(),
        &[
            "--profile",
            "gone",
            "sign",
            "saas-v2",
            "--body-file",
            "body.json",
        ],
    );
    assert_eq!(code, 3);
    assert!(
        err.starts_with(&format!(
            "csm: error: profile \"gone\" key_file {path}: No such file"
        )),
        "{err}"
    );
}

/// `profile list` still lists when the selected profile does not exist, and warns where
/// the name came from.
#[test]
fn profile_list_warns_of_a_selected_profile_that_does_not_exist() {
    let h = home();
    let init = [
        "init",
        "--profile",
        "prod",
        "--endpoint",
        ENDPOINT,
        "--protocol",
        "v2",
        "--key-file",
        ".keys/basic",
    ];
    assert_eq!(run(h.path(), &init).0, 0);
    let (code, out, err) = run_with(h.path(), &["profile", "list"], &[("CSM_PROFILE", "nosuch")]);
    assert_eq!((code, out.as_str()), (0, "  prod\n"));
    assert!(
        err.starts_with("csm: warning: CSM_PROFILE nosuch: no such profile in ")
            && err.lines().count() == 1,
        "{err}"
    );
    let (code, out, err) = run(h.path(), &["--profile", "nosuch", "-q", "profile", "list"]);
    assert_eq!((code, out.as_str()), (0, "prod\n"));
    assert!(
        err.starts_with("csm: warning: --profile nosuch: no such profile"),
        "{err}"
    );
    // The flag wins over the variable, and is named.
    let (_, _, err) = run_with(
        h.path(),
        &["--profile", "other", "profile", "list"],
        &[("CSM_PROFILE", "prod")],
    );
    assert!(err.starts_with("csm: warning: --profile other: "), "{err}");
    let (code, out, err) = run_with(h.path(), &["profile", "list"], &[("CSM_PROFILE", "prod")]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "* prod\n", ""));
}

/// A broken config.toml fails every command, on one line naming the file, the place and
/// the parser's message.
#[test]
fn a_broken_config_is_one_line_with_its_place() {
    let h = home();
    let file = h.path().join("config.toml");
    std::fs::write(
        &file,
        format!("# mine\n[profiles.prod]\nendpoint = \"{ENDPOINT}\"\n[profiles.x\n"),
    )
    .unwrap();
    for args in [
        &["profile", "list"][..],
        &["sign", "saas-v2", "--body-file", "body.json"],
    ] {
        let (code, _, err) = run(h.path(), args);
        assert_eq!(code, 3, "{args:?}");
        assert_eq!(
            err,
            format!(
                "csm: error: {}: not a valid csm config at line 4 column 12: invalid table header; expected `.`, `]`\n",
                file.display()
            ),
            "{args:?}"
        );
    }
    std::fs::write(&file, "[profiles.prod]\nendpoint = \"a\"\nkey = 1\n").unwrap();
    let (code, _, err) = run(h.path(), &["profile", "list"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("config.toml: not a valid csm config at line 3 column 1: unknown field `key`")
            && err.lines().count() == 1,
        "{err}"
    );
}

/// The endpoint a profile keeps follows the rule of every endpoint flag: a host, and no
/// `user:password@` (it would be printed with every request); the password is not echoed.
#[test]
fn init_keeps_no_endpoint_the_endpoint_flags_refuse() {
    let h = home();
    for (url, says) in [
        (
            "https://seller:hunter2@isv.example.com/produce",
            "must not contain a user name or password",
        ),
        ("https://", "not a URL"),
    ] {
        let (code, out, err) = run(
            h.path(),
            &[
                "init",
                "--no-input",
                "--endpoint",
                url,
                "--protocol",
                "v2",
                "--key-file",
                ".keys/basic",
            ],
        );
        assert_eq!(code, 2, "{url}: {out}{err}");
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(
            !h.path().join("config.toml").exists(),
            "{url}: a profile was written"
        );
    }
}
