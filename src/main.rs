use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pigsty::cli::Cli;

// Rendering a fleet makes many small, short-lived allocations on every core (JSON
// contexts, template output): glibc's allocator took a quarter of `plan --all`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    match pigsty::commands::run(&cli, &mut stdout) {
        Ok(()) => match stdout.flush() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: writing to stdout: {e}");
                ExitCode::from(1)
            }
        },
        Err(err) => {
            let _ = stdout.flush();
            eprint!("{}", pigsty::commands::describe_error(&err));
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIGSTY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: the journal and log files get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
