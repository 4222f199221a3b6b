//! Write pigsty's man pages or shell completions into a directory, for packagers:
//! `cargo run --example generate -- man docs/man` or `-- completions docs/completions`
//! (what those directories hold; tests/cli.rs checks they are current).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (what, dir) = match args.as_slice() {
        [what, dir] => (what.as_str(), PathBuf::from(dir)),
        _ => return usage(),
    };
    let files = match what {
        "man" => pigsty::generate::man_pages(),
        "completions" => Ok(pigsty::generate::completions()),
        _ => return usage(),
    };
    match files.and_then(|f| pigsty::generate::write_to(&dir, &f)) {
        Ok(names) => {
            for name in names {
                println!("{}", dir.join(name).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: cargo run --example generate -- man|completions DIR");
    ExitCode::from(2)
}
