//! The recovery timeline as SVG: one row per recovery, a bar per phase from the fault on
//! (fault -> detected -> restart begun -> ... -> healthy again). The drill's report and the
//! status page both draw theirs with it.

use std::fmt::Write as _;

/// One phase of a recovery: its name (in the legend and the bar's tooltip) and colour.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    pub label: &'static str,
    pub color: &'static str,
}

/// The phases every recovery starts with.
pub const FAULT_TO_DETECTED: Phase = Phase {
    label: "fault -> detected",
    color: "#e4572e",
};
pub const DETECTED_TO_RESTART_BEGUN: Phase = Phase {
    label: "detected -> restart begun",
    color: "#f3a712",
};
/// The colour of the last phase: healthy again.
pub const HEALTHY_COLOR: &str = "#29a36a";

/// One recovery.
#[derive(Debug, Clone, Default)]
pub struct TimelineRow {
    pub label: String,
    /// Seconds after the fault at which each phase ended, one per phase; `None`: not reached.
    pub ends: Vec<Option<f64>>,
    /// The limit this recovery had to meet, seconds after the fault (a red line).
    pub limit: Option<f64>,
    /// Where the row's label links to.
    pub href: Option<String>,
    /// The row's `id` attribute.
    pub anchor: Option<String>,
}

/// How the chart is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    /// A white sheet with dark text: a file on its own.
    Paper,
    /// No background, text in `currentColor`: inside a page, following its colours (dark mode).
    Inherit,
}

#[derive(Debug, Clone)]
pub struct TimelineChart<'a> {
    pub title: String,
    pub phases: &'a [Phase],
    pub rows: Vec<TimelineRow>,
    pub theme: Theme,
    /// Written after a row whose last phase has not ended.
    pub unfinished: &'a str,
}

const LIMIT_COLOR: &str = "#c00";

impl TimelineChart<'_> {
    pub fn svg(&self) -> String {
        const PLOT: f64 = 620.0;
        // Room for the longest label (about 6.5 px a character at 11 px), within bounds.
        let longest = self.rows.iter().map(|r| r.label.chars().count()).max();
        let left = (20.0 + 6.5 * longest.unwrap_or(0) as f64).clamp(150.0, 360.0);
        const ROW: f64 = 22.0;
        const TOP: f64 = 40.0;
        let span = self
            .rows
            .iter()
            .flat_map(|r| {
                r.ends
                    .iter()
                    .copied()
                    .chain([r.limit.map(|l| l.min(3600.0))])
            })
            .flatten()
            .fold(1.0_f64, f64::max)
            * 1.05;
        let x = |s: f64| left + (s.max(0.0) / span) * PLOT;
        let height = TOP + ROW * self.rows.len() as f64 + 70.0;
        // Room on the right for the words after an unfinished row.
        let width = left + PLOT + 20.0 + 6.5 * self.unfinished.len() as f64;
        let (background, text, tick, grid) = match self.theme {
            Theme::Paper => (
                "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
                "black",
                "#555",
                "#ddd",
            ),
            Theme::Inherit => ("", "currentColor", "currentColor", "#8884"),
        };
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\" font-size=\"11\" fill=\"{text}\">\n\
             {background}<text x=\"10\" y=\"18\" font-size=\"13\">{}</text>\n",
            xml(&self.title),
            xml(&self.title)
        );
        // Axis ticks.
        let step = nice_step(span);
        let mut s = 0.0;
        let bottom = TOP + ROW * self.rows.len() as f64;
        while s <= span {
            let _ = writeln!(
                out,
                "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"{grid}\"/>\
                 <text x=\"{0:.1}\" y=\"{1:.0}\" text-anchor=\"middle\" fill=\"{tick}\">{s}</text>",
                x(s),
                bottom + 14.0
            );
            s += step;
        }
        for (i, r) in self.rows.iter().enumerate() {
            let y = TOP + ROW * i as f64;
            if let Some(a) = &r.anchor {
                let _ = writeln!(out, "<g id=\"{}\">", xml(a));
            }
            let label = format!(
                "<text x=\"10\" y=\"{:.0}\">{}</text>",
                y + 15.0,
                xml(&r.label)
            );
            match &r.href {
                Some(h) => {
                    let _ = writeln!(out, "<a href=\"{}\">{label}</a>", xml(h));
                }
                None => out += &(label + "\n"),
            }
            let mut from = 0.0;
            for (phase, end) in self.phases.iter().zip(&r.ends) {
                let Some(to) = *end else { continue };
                let to = to.max(from);
                let _ = writeln!(
                    out,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{}\"><title>{}: {:.2}s to {:.2}s</title></rect>",
                    x(from),
                    y + 4.0,
                    (x(to) - x(from)).max(1.0),
                    phase.color,
                    xml(phase.label),
                    from,
                    to
                );
                from = to;
            }
            if r.ends.last().is_none_or(Option::is_none) {
                let _ = writeln!(
                    out,
                    "<text x=\"{:.1}\" y=\"{:.0}\" fill=\"{LIMIT_COLOR}\">{}</text>",
                    x(from) + 4.0,
                    y + 15.0,
                    xml(self.unfinished)
                );
            }
            if let Some(limit) = r.limit {
                let l = x(limit);
                let _ = writeln!(
                    out,
                    "<line x1=\"{l:.1}\" y1=\"{:.1}\" x2=\"{l:.1}\" y2=\"{:.1}\" stroke=\"{LIMIT_COLOR}\" stroke-width=\"2\"><title>limit {:.0}s</title></line>",
                    y + 2.0,
                    y + 20.0,
                    limit
                );
            }
            if r.anchor.is_some() {
                out += "</g>\n";
            }
        }
        let ly = bottom + 34.0;
        let mut lx = 10.0;
        let limit = Phase {
            label: "limit",
            color: LIMIT_COLOR,
        };
        let has_limit = self.rows.iter().any(|r| r.limit.is_some());
        for p in self.phases.iter().chain(has_limit.then_some(&limit)) {
            let _ = writeln!(
                out,
                "<rect x=\"{lx:.0}\" y=\"{:.0}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{}</text>",
                ly - 10.0,
                p.color,
                lx + 16.0,
                ly,
                xml(p.label)
            );
            lx += 16.0 + 7.0 * p.label.len() as f64 + 14.0;
        }
        out += "</svg>\n";
        out
    }
}

fn nice_step(span: f64) -> f64 {
    [
        0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|s| span / s <= 12.0)
    .unwrap_or(1200.0)
}

/// Text escaped for XML and HTML, in element content and in quoted attributes.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [Phase; 2] = [
        Phase {
            label: "a",
            color: "#111",
        },
        Phase {
            label: "b",
            color: "#222",
        },
    ];

    #[test]
    fn rows_bars_links_and_escaping() {
        let chart = TimelineChart {
            title: "t <&>".into(),
            phases: &PHASES,
            rows: vec![
                TimelineRow {
                    label: "<img src=x onerror=alert(1)>".into(),
                    ends: vec![Some(1.0), Some(3.0)],
                    limit: None,
                    href: Some("/incidents/7?a=1&b=\"2\"".into()),
                    anchor: Some("incident-7".into()),
                },
                TimelineRow {
                    label: "open".into(),
                    ends: vec![Some(2.0), None],
                    ..TimelineRow::default()
                },
            ],
            theme: Theme::Inherit,
            unfinished: "not yet",
        };
        let svg = chart.svg();
        assert!(!svg.contains("<img"), "{svg}");
        assert!(svg.contains("&lt;img src=x onerror=alert(1)&gt;"), "{svg}");
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert!(svg.contains("<a href=\"/incidents/7?a=1&amp;b=&quot;2&quot;\">"));
        assert!(svg.contains("<g id=\"incident-7\">"));
        assert_eq!(svg.matches("<rect").count(), 3 + PHASES.len(), "{svg}");
        assert_eq!(svg.matches("not yet").count(), 1);
        assert!(!svg.contains("white") && !svg.contains("limit"), "{svg}");
    }

    #[test]
    fn escapes_every_markup_character() {
        assert_eq!(xml("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
