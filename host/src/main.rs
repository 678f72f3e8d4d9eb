//! The `wbuild` binary: parse the command line, run it, print errors for people.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // The RUN sandbox's helper is this binary re-executed: it never returns from here.
    wbuild::sandbox_entry();
    // Output piped into `head` ends the process quietly, as with other Unix tools, instead of a
    // panic on the next println.
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = wbuild::cli::Cli::parse();
    match wbuild::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(r) = e.downcast_ref::<wbuild::cli::Reported>() {
                eprint!("{r}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
