//! The `cbsnap` command: parses arguments, calls one engine function, prints the
//! result. Exit codes: 0 ok; 1 error; 2 bad usage; 3 snapshot committed but some
//! files could not be read; 130/143 interrupted.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
