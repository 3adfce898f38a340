//! The command-line model (clap derive). No logic here: each subcommand's arguments live in
//! its own file under `commands/`.

use crate::commands;
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "csm",
    version,
    about = "KooGallery seller toolkit: signed test callbacks, signatures, license codes, usage records",
    long_about = None,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print one JSON object (or JSON lines for streams) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing on stdout but the result itself.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Profile from the config file (`csm init`) that supplies endpoint and key locations.
    #[arg(long, global = true, env = "CSM_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Never prompt; fail with a message naming the flag to pass instead.
    #[arg(long, global = true, env = "CSM_NO_INPUT", action = clap::ArgAction::SetTrue,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub no_input: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute a signature offline (every KooGallery scheme).
    Sign(commands::sign::SignArgs),
    /// Check a signature; on a mismatch, show what was signed and find the usual mistake.
    Verify(commands::verify::VerifyArgs),
    /// V1 credential encryption (derive the AES key, encrypt, decrypt); a 联营 app's RSA pair.
    Crypto(commands::crypto::CryptoArgs),
    /// Send one signed callback to an endpoint and judge the reply.
    Send(commands::send::SendArgs),
    /// Play the marketplace against an endpoint: lifecycle, idempotency, negative, dial, readiness.
    TestEndpoint(commands::test_endpoint::TestEndpointArgs),
    /// Signed callbacks at a fixed arrival rate: honest latency percentiles, a CI gate.
    Load(commands::load::LoadArgs),
    /// Run a reference merchant endpoint or a stand-in marketplace on this machine.
    Serve(commands::serve::ServeArgs),
    /// License codes: keys, generation, inspection, validation, activation.
    License(commands::license::LicenseArgs),
    /// Usage records (话单): validate, upload, replay, status, export, resolve.
    Usage(commands::usage::UsageArgs),
    /// Interactive setup of a profile (endpoint, protocol, key locations).
    Init(commands::init::InitArgs),
    /// The profiles `csm init` wrote: list them, show one (key file paths, never keys).
    Profile(commands::profile::ProfileArgs),
    /// Print a shell completion script.
    Completions(commands::completions::CompletionsArgs),
    /// Write the manual pages into a directory (e.g. ~/.local/share/man/man1)
    Man(commands::man::ManArgs),
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn the_cli_model_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every option and argument of every subcommand says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help"
                    && id != "version"
                    && a.get_help().is_none()
                    && a.get_long_help().is_none()
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "csm", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
