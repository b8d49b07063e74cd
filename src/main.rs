//! The `bilevel` command line; see `bilevel --help` and docs/cli.md.
use clap::Parser;

fn main() {
    let cli = bilevel::cli::Cli::parse();
    if let Err(e) = bilevel::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
