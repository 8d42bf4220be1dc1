use super::*;
use crate::evidence::{Evidence, ExitRecord, LogLine, LogStream, Logs};
use crate::http::test_support::{recovered, shared_with_incidents};
use crate::journal::Incident;
use crate::shared::ViewState;
use axum::body::Body;
use axum::http::Request;
use selfheal_core::dependents::{ParentLink, Via};
use selfheal_core::{LabelError, State};
use std::time::Duration;
use tower::ServiceExt;

const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// A container whose one label error is markup.
fn view(name: &str, state: ViewState) -> ContainerView {
    ContainerView {
        label_errors: vec![LabelError {
            label: "selfheal.probe.interval".into(),
            value: HOSTILE.into(),
            reason: "not a duration".into(),
        }],
        ..ContainerView::bare(&format!("id-{name}"), name, state)
    }
}

/// The window as a page shows it (the text need not parse: it is only shown back).
fn window(since: &str) -> Window {
    Window {
        since_text: since.into(),
        since: SystemTime::now() - Duration::from_secs(3600),
        before: None,
    }
}

fn snapshot(containers: Vec<ContainerView>, incidents: Vec<Incident>) -> Snapshot {
    Snapshot {
        containers,
        incidents: IncidentPage {
            incidents,
            next_before: None,
        },
        docker_up: true,
    }
}

/// Every name and label value is text, never markup.
#[test]
fn hostile_names_and_label_values_are_escaped() {
    let mut incident = recovered(3, Duration::from_secs(60));
    incident.container = "<b>c</b>".into();
    let snap = snapshot(
        vec![view("x\"><script>alert(1)</script>", ViewState::Ignored)],
        vec![incident],
    );
    let page = render::index(&snap, &window("24h\"><script>")).into_string();
    for bad in ["<img", "<script>alert", "<b>c", "\"><script>"] {
        assert!(!page.contains(bad), "{bad} in {page}");
    }
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    assert!(page.contains("<span class=\"state bad\">ignored</span>"));
    assert!(page.contains("<span class=\"state ok\">reachable</span>"));
    assert_eq!(
        page.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(page.contains("id=\"incident-3\""));
}

/// Each state's word is written, coloured by its class; the view's typed fields are shown.
#[test]
fn container_rows_show_the_typed_view() {
    let mut healthy = view("web", State::Healthy.into());
    healthy.label_errors.clear();
    healthy.docker_health = Some(selfheal_core::DockerHealth::Healthy);
    healthy.restarts_in_window = 2;
    let labels = [("selfheal.enable", "true"), ("selfheal.restart.max", "10")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    healthy.spec = selfheal_core::labels::parse_labels(
        &labels,
        &selfheal_core::WatchDefaults::default(),
        false,
    )
    .unwrap();
    let mut stuck = view("db", State::BackingOff.into());
    stuck.cannot_observe = Some(selfheal_core::Unobservable::Resolve);
    stuck.restart_in_flight = true;
    stuck.last_incident = Some(recovered(7, Duration::from_secs(5)));
    let page =
        render::index(&snapshot(vec![healthy, stuck], Vec::new()), &window("1h")).into_string();
    for want in [
        "<span class=\"state ok\">healthy</span></td><td>healthy</td><td>2 of 10 in 1h</td>",
        "<span class=\"state warn\">backing_off</span> <span class=\"muted\">(restart in flight)</span> <span class=\"muted\">cannot observe: resolve</span>",
        "<a href=\"/incidents/7\">#7</a> probe_failed <span class=\"state ok\">recovered</span>",
        "2 containers: 1 backing_off, 1 healthy",
    ] {
        assert!(page.contains(want), "{want} missing from {page}");
    }
}

/// Dependency and evidence fields are shown when present, and their absence is no error.
#[test]
fn optional_fields_render_when_present() {
    let mut c = view("web", State::Healthy.into());
    let row = |c: &ContainerView| {
        render::index(&snapshot(vec![c.clone()], Vec::new()), &window("1h")).into_string()
    };
    assert!(!row(&c).contains("after:"));
    c.dependencies.depends_on = vec![ParentLink {
        name: "db".into(),
        id: "1".into(),
        via: Via::Network,
    }];
    c.dependencies.dependents = vec!["<api>".into()];
    c.dependencies.dependency_error = Some("selfheal.depends-on=nope: no such container".into());
    c.waiting_on = Some("db".into());
    let d = row(&c);
    assert!(d.contains("after: db (network)"), "{d}");
    assert!(d.contains("dependents: &lt;api&gt;"), "{d}");
    assert!(
        d.contains("waiting on: db") && d.contains("no such container"),
        "{d}"
    );
    let mut i = recovered(9, Duration::from_secs(30));
    i.attempts = 2;
    let at = i.first_failure;
    i.steps = vec![
        crate::journal::Step {
            verb: selfheal_core::VerbKind::Restart,
            at,
        },
        crate::journal::Step {
            verb: selfheal_core::VerbKind::Recreate,
            at,
        },
    ];
    assert!(render::incident(&i)
        .into_string()
        .contains("No evidence recorded"));
    i.evidence = Some(Arc::new(Evidence {
        exit: Some(ExitRecord::new(137, true)),
        logs: Some(Logs {
            lines: vec![LogLine {
                stream: LogStream::Stderr,
                time: None,
                text: "<panic>".into(),
            }],
            truncated: true,
            note: Some("last 2 lines".into()),
        }),
        ..Evidence::default()
    }));
    let p = render::incident(&i).into_string();
    assert!(p.contains("&quot;exit_code&quot;: 137"), "{p}");
    assert!(p.contains("&quot;signal&quot;: &quot;SIGKILL&quot;"), "{p}");
    assert!(
        p.contains("<span class=\"stderr\">&lt;panic&gt;</span>"),
        "{p}"
    );
    assert!(p.contains("(truncated)") && p.contains("last 2 lines"));
    assert!(p.contains("<dt>restart attempts</dt><dd>2</dd>"), "{p}");
    assert!(
        p.contains(&format!(
            "<dt>steps</dt><dd>restart at {at}; recreate at {at}</dd>"
        )),
        "{p}"
    );
    assert!(p.contains("<dt>time to recover</dt><dd>5.52 s</dd>"), "{p}");
}

#[test]
fn timeline_bars_run_from_the_first_failure() {
    let mut i = recovered(4, Duration::from_secs(60));
    let at = |t: &str| -> crate::journal::Timestamp {
        humantime::parse_rfc3339_weak(t).expect("RFC 3339").into()
    };
    i.first_failure = at("2026-01-01T00:00:00Z");
    i.detected = at("2026-01-01T00:00:02Z");
    i.action_begun = Some(at("2026-01-01T00:00:03Z"));
    i.healthy_again = Some(at("2026-01-01T00:00:07Z"));
    let svg = render::timeline(&[i], "incidents since 1h");
    assert!(
        svg.contains("fault -&gt; detected: 0.00s to 2.00s"),
        "{svg}"
    );
    assert!(
        svg.contains("detected -&gt; restart begun: 2.00s to 3.00s"),
        "{svg}"
    );
    assert!(
        svg.contains("restart begun -&gt; healthy again: 3.00s to 7.00s"),
        "{svg}"
    );
    assert!(!svg.contains("not healthy again"));
}

/// A container name in the timeline is text in the SVG, in its label and tooltip alike.
#[test]
fn timeline_escapes_container_names() {
    let mut i = recovered(5, Duration::from_secs(60));
    i.container = "<script>alert(\"x\")</script>&'".into();
    let svg = render::timeline(&[i], "incidents since <1h> & \"more\"");
    assert!(!svg.contains("<script"), "{svg}");
    assert!(
        svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;' #5</text>"),
        "{svg}"
    );
    assert!(
        svg.contains("aria-label=\"incidents since &lt;1h&gt; &amp; &quot;more&quot; - seconds"),
        "{svg}"
    );
}

async fn get(app: &Router, uri: &str) -> (StatusCode, HeaderMap, String) {
    let req = Request::get(uri)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let (status, h) = (r.status(), r.headers().clone());
    let body = axum::body::to_bytes(r.into_body(), 1 << 30).await.unwrap();
    (status, h, String::from_utf8(body.to_vec()).unwrap())
}

/// A bad `?since=` or `?before=` is a 400 that names the value (as text); every page and file
/// carries the CSP; the timeline is SVG.
#[tokio::test]
async fn routes_answer_with_the_policy_and_name_bad_input() {
    let (shared, _dir) = shared_with_incidents(0);
    let app = crate::http::router(shared);
    for uri in [
        "/",
        "/status.css",
        "/status.js",
        "/favicon.svg",
        "/status/timeline.svg",
    ] {
        let (status, h, _) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(
            h[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY,
            "{uri}"
        );
    }
    let (_, h, body) = get(&app, "/status/timeline.svg?since=2h").await;
    assert_eq!(h[header::CONTENT_TYPE], "image/svg+xml");
    assert!(
        body.starts_with("<svg") && body.contains("incidents since 2h"),
        "{body}"
    );
    let (status, _, body) = get(&app, "/?since=%3Cb%3Esoon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("since=&quot;&lt;b&gt;soon&quot;"), "{body}");
    assert!(!body.contains("<b>"), "{body}");
    let (status, _, body) = get(&app, "/?before=%3Cb%3E").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("before=&quot;&lt;b&gt;&quot;"), "{body}");
    let (status, _, body) = get(&app, "/incidents/x%3Cy").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("incident &quot;x&lt;y&quot;: expected a number"),
        "{body}"
    );
    let (status, _, body) = get(&app, "/incidents/5").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("No incident #5 in the journal."), "{body}");
}

/// The incident ids listed in a page's incident table, in order.
fn listed(page: &str) -> Vec<u64> {
    page.split("<tr data-incident=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// The `href` of the page's link with this id, `&amp;` read back as `&`.
fn link(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let tag = &page[page[..at].rfind('<')?..];
    let tag = &tag[..tag.find('>')?];
    if tag.contains(" hidden") {
        return None;
    }
    let href = &tag[tag.find("href=\"")? + 6..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

/// With 10,000 incidents in the journal the page stays under 200 KB: it lists the newest
/// page (the newest incident first) and links to the older ones, whose page links back.
#[tokio::test]
async fn at_10000_incidents_the_page_stays_small_and_pages() {
    let (shared, _dir) = shared_with_incidents(10_000);
    let app = crate::http::router(shared);
    let (status, _, page) = get(&app, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.len() < 200_000, "{} bytes", page.len());
    let newest = listed(&page);
    assert_eq!(newest.len(), PAGE_SIZE);
    assert_eq!(newest.first(), Some(&10_000));
    assert!(
        page.contains("id=\"incident-10000\""),
        "in the timeline too"
    );
    assert_eq!(link(&page, "newest"), None, "already the newest page");
    let older = link(&page, "older").expect("a link to older incidents");
    assert_eq!(older, "/?since=24h&before=9951");

    let (status, _, page) = get(&app, &older).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.len() < 200_000, "{} bytes", page.len());
    assert_eq!(listed(&page), (9901..=9950).rev().collect::<Vec<u64>>());
    assert!(
        page.contains("data-before=\"9951\""),
        "for the script's polls"
    );
    assert_eq!(link(&page, "newest").as_deref(), Some("/?since=24h"));

    // The last page has no older link.
    let (_, _, page) = get(&app, "/?since=24h&before=21").await;
    assert_eq!(listed(&page), (1..=20).rev().collect::<Vec<u64>>());
    assert_eq!(link(&page, "older"), None);
}
