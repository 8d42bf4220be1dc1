use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = selfheal::cli::Cli::parse();
    // One thread for every task: the daemon only waits on I/O. A multi-thread runtime with one
    // worker ran the watch loop on this thread and the tasks on the worker, so two threads and
    // two malloc arenas held memory for the same work (BENCHMARKS.md, footprint). Journal
    // writes and fsyncs happen on the journal's own thread, never on this one.
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
