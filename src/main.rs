//! The `cbsnap` command: parses arguments, calls one engine function, prints the
//! result. Exit codes (the policy is in `src/error.rs`): 0 ok; 1 error, including
//! states of the environment (a volume in use); 2 bad usage only; 3 finished but not
//! exactly; 130/143 interrupted.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
