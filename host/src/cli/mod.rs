//! The command line: [`Cli`] (the arguments, in [`args`]) and [`run`], which opens a
//! [`Session`] and hands each command to its file — `build`/`plan` ([`build`]), the store
//! commands ([`store`]), `frontends` and `debug` ([`frontends`]), the registry commands
//! ([`registry`]). The pipeline itself is the library's ([`crate::session`]); this module only
//! parses, calls and prints.

mod args;
mod build;
mod daily;
mod diagnostics;
mod frontends;
mod outputs;
mod parse;
mod registry;
mod store;

pub use args::{BuildOpts, Cli, Command, DebugCommand, FrontendsCommand, PlanOpts};

use std::sync::Arc;

use crate::ir::{host_platform, parse_platform};
use crate::session::Session;
use crate::store::Store;

/// An error whose message is already fully rendered for the user (diagnostics).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Run the command line; the returned error is printed by `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    let registry = || crate::registry::Registry::new(cli.insecure_registries.clone());
    let session = || Session::open(&root, registry());
    match &cli.command {
        None => build::build(&session()?, &cli.build),
        Some(Command::Build(opts)) => build::build(&session()?, opts),
        Some(Command::Plan(opts)) => build::plan(&session()?, opts),
        Some(Command::Pull { name, platform }) => {
            let platform = match platform {
                Some(p) => parse_platform(p)?,
                None => host_platform(),
            };
            registry::pull(&root, &Arc::new(registry()), name, &platform)
        }
        Some(Command::Push { name }) => registry::push(&root, &Arc::new(registry()), name),
        Some(Command::Login {
            server,
            username,
            password,
            password_stdin,
        }) => registry::login(
            &Arc::new(registry()),
            server.clone(),
            username.clone(),
            password.clone(),
            *password_stdin,
        ),
        Some(Command::Logout { server }) => registry::logout(server.clone()),
        Some(Command::Frontends { action: None }) => frontends::frontends(&session()?),
        Some(Command::Frontends {
            action: Some(FrontendsCommand::Push { file, name }),
        }) => frontends::push_frontend(&session()?, file, name),
        Some(Command::Import { file, tags }) => store::import(&root, file, tags),
        Some(Command::Images) => store::images(&root),
        Some(Command::Rm { names }) => store::rm(&root, names),
        Some(Command::Prune) => store::prune(&root),
        Some(Command::Du) => store::du(&root),
        Some(Command::Check { repair }) => store::check(&root, *repair),
        Some(Command::Debug(DebugCommand::Ast { file })) => frontends::debug_ast(file),
    }
}
