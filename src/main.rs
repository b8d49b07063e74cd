//! The `bilevel` command line (for now: the kernels demonstration).
fn main() {
    if let Err(e) = bilevel::demo::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
