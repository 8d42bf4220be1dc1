//! The benchmark harness behind `make bench` (see BENCHMARKS.md for method and results).
//!
//! An example rather than a binary of the crate: it is built and linted with the workspace
//! (`--all-targets`), calls the library's real code (`probe::schedule`, the Docker edge), and is
//! never shipped in the watchdog's image or installed with it.
//!
//! `bench [all|reaction|reaction-soon|hang|hang-soon|refault|crash|footprint|probe-scale|mass|
//! journal-start]
//! [--out DIR]`. Each benchmark measures its figure and its floor in the same run and writes
//! `DIR/<name>.json`. Every container carries a label unique to the run and is removed at the
//! end, even on failure or Ctrl+C.
//!
//! Environment: `BENCH_SOON_ROUNDS` (rounds per image of reaction-soon and hang-soon, 8),
//! `BENCH_REFAULT_CYCLES` (6), `BENCH_IMAGES` (images of those three: `demo-app,busybox`),
//! `BENCH_FOOTPRINT_MAX` (200), `BENCH_FOOTPRINT_SECONDS` (60), `BENCH_JOURNAL_MIB` (1024),
//! `BENCH_JOURNAL_ROUNDS` (3).

mod after_start;
mod docker_benches;
mod footprint;
mod harness;
mod journal_start;
mod probe_scale;

use std::path::PathBuf;
use std::process::ExitCode;

const BENCHES: [&str; 10] = [
    "reaction",
    "reaction-soon",
    "hang",
    "hang-soon",
    "refault",
    "crash",
    "mass",
    "probe-scale",
    "footprint",
    "journal-start",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("probe-server") {
        return probe_scale::server_main(&args[1..]);
    }
    let mut out = PathBuf::from("bench/results");
    let mut which = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => match it.next() {
                Some(d) => out = PathBuf::from(d),
                None => return usage(),
            },
            "all" => which.extend(BENCHES.map(String::from)),
            b if BENCHES.contains(&b) => which.push(b.to_string()),
            _ => return usage(),
        }
    }
    if which.is_empty() {
        return usage();
    }
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("bench: {}: {e}", out.display());
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for name in which {
        eprintln!("== {name}");
        let began = std::time::Instant::now();
        let result = rt.block_on(async {
            tokio::select! {
                r = run_one(&name) => r,
                _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            }
        });
        eprintln!("== {name}: {:.0} s", began.elapsed().as_secs_f64());
        match result {
            Ok(value) => {
                let path = out.join(format!("{name}.json"));
                let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                println!("{name}: {text}");
                if let Err(e) = std::fs::write(&path, text + "\n") {
                    eprintln!("bench: {}: {e}", path.display());
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("bench {name}: FAILED: {e}");
                failed = true;
                if e == "interrupted" {
                    break;
                }
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn run_one(name: &str) -> Result<serde_json::Value, String> {
    match name {
        "reaction" => docker_benches::reaction().await,
        "hang" => docker_benches::hang().await,
        "reaction-soon" => after_start::reaction_soon().await,
        "hang-soon" => after_start::hang_soon().await,
        "refault" => after_start::refault().await,
        "crash" => docker_benches::crash().await,
        "mass" => docker_benches::mass().await,
        "footprint" => footprint::run().await,
        "probe-scale" => probe_scale::run().await,
        "journal-start" => journal_start::run().await,
        _ => Err(format!("unknown benchmark {name}")),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: bench [all|{}]... [--out DIR]", BENCHES.join("|"));
    eprintln!(
        "env: BENCH_SOON_ROUNDS (8, per image: reaction-soon, hang-soon), BENCH_REFAULT_CYCLES \
         (6), BENCH_IMAGES (demo-app,busybox: reaction-soon, hang-soon, refault), \
         BENCH_FOOTPRINT_MAX (200), BENCH_FOOTPRINT_SECONDS (60), BENCH_JOURNAL_MIB (1024), \
         BENCH_JOURNAL_ROUNDS (3)"
    );
    ExitCode::from(2)
}
