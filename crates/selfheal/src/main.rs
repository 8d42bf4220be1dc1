use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = selfheal::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
