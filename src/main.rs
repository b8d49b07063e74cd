//! The `bilevel` command line; see `bilevel --help` and docs/cli.md.
use clap::Parser;

mod cli;
mod hypergrad_cmd;
mod output;
mod problem_args;
mod scaling_cmd;
mod solve_cmd;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
