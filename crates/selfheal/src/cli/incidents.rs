//! `selfheal incidents`: the journal's incidents, from the state directory or a watchdog's API.

use super::*;

pub(super) async fn incidents(args: IncidentsArgs) -> anyhow::Result<ExitCode> {
    if let Some(IncidentsCommand::Show { id }) = &args.show {
        return show_incident(&args, id).await;
    }
    let since = args
        .since
        .as_deref()
        .map(crate::http::api::parse_since)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let list: Vec<Incident> = match &args.api {
        Some(api) => {
            let mut url =
                reqwest::Url::parse(&format!("{}/api/v1/incidents", api.trim_end_matches('/')))?;
            if let Some(s) = &args.since {
                url.query_pairs_mut().append_pair("since", s);
            }
            if let Some(c) = &args.container {
                url.query_pairs_mut().append_pair("container", c);
            }
            crate::http::api::fetch_all_incidents(url).await?
        }
        None => {
            let (journal, report) = journal::read_only(&args.state_dir)?;
            if report.skipped_count > 0 {
                eprintln!(
                    "selfheal: skipped {} unreadable record(s) in the journal",
                    report.skipped_count
                );
            }
            journal.list(since, args.container.as_deref())
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5}  {:<24}  {:<24}  {:<12}  {:<11}  {:>8}  {:>8}  {:>4}",
        "ID", "DETECTED", "CONTAINER", "TRIGGER", "OUTCOME", "DETECT", "RECOVER", "TRY"
    );
    for i in &list {
        let secs = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.2}s"));
        println!(
            "{:>5}  {:<24}  {:<24}  {:<12}  {:<11}  {:>8}  {:>8}  {:>4}",
            i.id,
            i.detected,
            truncate(&i.container, 24),
            i.trigger.as_str(),
            i.outcome,
            secs(i.time_to_detect_seconds),
            secs(i.time_to_recover_seconds),
            i.attempts
        );
    }
    if list.is_empty() {
        println!("(no incidents)");
    }
    Ok(ExitCode::SUCCESS)
}

/// `selfheal incidents show ID`: exit 1 if there is no such incident, 2 for an id that is not
/// a number.
async fn show_incident(args: &IncidentsArgs, id: &str) -> anyhow::Result<ExitCode> {
    let n: u64 = id
        .parse()
        .map_err(|_| anyhow::anyhow!("incident id {id:?}: expected a number"))?;
    let found: Option<Incident> = match &args.api {
        Some(api) => {
            let url = format!("{}/api/v1/incidents/{n}", api.trim_end_matches('/'));
            let r = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            if r.status() == reqwest::StatusCode::NOT_FOUND {
                None
            } else {
                Some(r.error_for_status()?.json().await?)
            }
        }
        None => journal::read_only(&args.state_dir)?.0.get(n),
    };
    let Some(incident) = found else {
        let source = match &args.api {
            Some(api) => api.clone(),
            None => args.state_dir.join("incidents.jsonl").display().to_string(),
        };
        eprintln!("selfheal: no incident {n} in {source}");
        return Ok(ExitCode::from(1));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&incident)?);
    } else {
        print!("{}", crate::incident_text::render(&incident));
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
