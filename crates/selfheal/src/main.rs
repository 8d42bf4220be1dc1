use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = selfheal::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // One worker: the daemon only waits on I/O, and a second worker measured no faster
        // while adding cross-thread wake-ups (BENCHMARKS.md, footprint). Journal writes and
        // fsyncs happen on the journal's own thread, never on this worker.
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("selfheal: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(selfheal::cli::run(cli))
}
