//! The recovery timeline as SVG: one row per recovery, a bar per phase from the fault on
//! (fault -> detected -> restart begun -> ... -> healthy again). The drill's report and the
//! status page both draw theirs with it. The layout (scale, positions) is computed as numbers
//! first; `maud` then writes the SVG from it, escaping every text and attribute value.

use maud::{html, Markup, Render};

/// One phase of a recovery: its name (in the legend and the bar's tooltip) and colour.
#[derive(Debug, Clone, Copy, PartialEq)]
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
/// The red line's entry in the legend.
const LIMIT: Phase = Phase {
    label: "limit",
    color: LIMIT_COLOR,
};

/// Where each piece of a chart goes, in px, with the numbers it shows: computed apart from
/// the markup, which only writes it out.
#[derive(Debug, Clone)]
struct Layout<'a> {
    width: f64,
    height: f64,
    /// The grid lines run from `top` to `bottom`; the tick values sit at `tick_y`.
    top: f64,
    bottom: f64,
    tick_y: f64,
    ticks: Vec<Tick>,
    rows: Vec<RowLayout<'a>>,
    legend: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq)]
struct Tick {
    x: f64,
    seconds: f64,
}

#[derive(Debug, Clone)]
struct RowLayout<'a> {
    row: &'a TimelineRow,
    /// The baseline of the row's label and of its unfinished note.
    text_y: f64,
    bars: Vec<Bar>,
    /// Where the unfinished note starts, when the last phase has not ended.
    unfinished_x: Option<f64>,
    limit: Option<LimitMark>,
}

#[derive(Debug, Clone, PartialEq)]
struct Bar {
    phase: Phase,
    x: f64,
    y: f64,
    width: f64,
    /// Seconds after the fault, for the tooltip.
    from: f64,
    to: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct LimitMark {
    x: f64,
    y1: f64,
    y2: f64,
    seconds: f64,
}

/// A legend entry: a swatch and the phase's name.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    phase: Phase,
    swatch_x: f64,
    swatch_y: f64,
    text_x: f64,
    text_y: f64,
}

/// The colours of the text, the tick values and the grid lines.
struct Colors {
    text: &'static str,
    tick: &'static str,
    grid: &'static str,
}

impl Theme {
    fn colors(self) -> Colors {
        match self {
            Theme::Paper => Colors {
                text: "black",
                tick: "#555",
                grid: "#ddd",
            },
            Theme::Inherit => Colors {
                text: "currentColor",
                tick: "currentColor",
                grid: "#8884",
            },
        }
    }
}

impl TimelineChart<'_> {
    fn layout(&self) -> Layout<'_> {
        const PLOT: f64 = 620.0;
        const ROW: f64 = 22.0;
        const TOP: f64 = 40.0;
        // Room for the longest label (about 6.5 px a character at 11 px), within bounds.
        let longest = self.rows.iter().map(|r| r.label.chars().count()).max();
        let left = (20.0 + 6.5 * longest.unwrap_or(0) as f64).clamp(150.0, 360.0);
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
        let bottom = TOP + ROW * self.rows.len() as f64;
        let step = nice_step(span);
        let mut ticks = Vec::new();
        let mut s = 0.0;
        while s <= span {
            ticks.push(Tick {
                x: x(s),
                seconds: s,
            });
            s += step;
        }
        let rows = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let y = TOP + ROW * i as f64;
                let mut bars = Vec::new();
                let mut from = 0.0;
                for (phase, end) in self.phases.iter().zip(&row.ends) {
                    let Some(to) = *end else { continue };
                    let to = to.max(from);
                    bars.push(Bar {
                        phase: *phase,
                        x: x(from),
                        y: y + 4.0,
                        width: (x(to) - x(from)).max(1.0),
                        from,
                        to,
                    });
                    from = to;
                }
                RowLayout {
                    row,
                    text_y: y + 15.0,
                    bars,
                    unfinished_x: row
                        .ends
                        .last()
                        .is_none_or(Option::is_none)
                        .then(|| x(from) + 4.0),
                    limit: row.limit.map(|seconds| LimitMark {
                        x: x(seconds),
                        y1: y + 2.0,
                        y2: y + 20.0,
                        seconds,
                    }),
                }
            })
            .collect();
        let ly = bottom + 34.0;
        let mut lx = 10.0;
        let has_limit = self.rows.iter().any(|r| r.limit.is_some());
        let legend = self
            .phases
            .iter()
            .chain(has_limit.then_some(&LIMIT))
            .map(|p| {
                let key = Key {
                    phase: *p,
                    swatch_x: lx,
                    swatch_y: ly - 10.0,
                    text_x: lx + 16.0,
                    text_y: ly,
                };
                lx += 16.0 + 7.0 * p.label.len() as f64 + 14.0;
                key
            })
            .collect();
        Layout {
            // Room on the right for the words after an unfinished row.
            width: left + PLOT + 20.0 + 6.5 * self.unfinished.len() as f64,
            height: bottom + 70.0,
            top: TOP,
            bottom,
            tick_y: bottom + 14.0,
            ticks,
            rows,
            legend,
        }
    }

    /// The chart as an SVG document of its own (a file, or `image/svg+xml`).
    pub fn svg(&self) -> String {
        let mut out = self.render().into_string();
        out.push('\n');
        out
    }

    /// One row: its label (a link when it has one), its bars, the unfinished note and its
    /// limit, grouped under its anchor when it has one.
    fn row(&self, r: &RowLayout) -> Markup {
        let label = html! { text x="10" y=(fixed(r.text_y, 0)) { (r.row.label) } };
        let content = html! {
            @if let Some(href) = &r.row.href { a href=(href) { (label) } } @else { (label) }
            @for b in &r.bars {
                rect x=(fixed(b.x, 1)) y=(fixed(b.y, 1)) width=(fixed(b.width, 1)) height="14"
                    fill=(b.phase.color) {
                    title { (b.phase.label) ": " (fixed(b.from, 2)) "s to " (fixed(b.to, 2)) "s" }
                }
            }
            @if let Some(x) = r.unfinished_x {
                text x=(fixed(x, 1)) y=(fixed(r.text_y, 0)) fill=(LIMIT_COLOR) { (self.unfinished) }
            }
            @if let Some(m) = &r.limit {
                line x1=(fixed(m.x, 1)) y1=(fixed(m.y1, 1)) x2=(fixed(m.x, 1)) y2=(fixed(m.y2, 1))
                    stroke=(LIMIT_COLOR) stroke-width="2" {
                    title { "limit " (fixed(m.seconds, 0)) "s" }
                }
            }
        };
        html! {
            @if let Some(id) = &r.row.anchor { g id=(id) { (content) } } @else { (content) }
        }
    }
}

/// The chart's SVG through `maud`, so every title, label, link and id is escaped where it
/// is written. Elements are closed explicitly (`{}`): the SVG is XML when served on its own.
/// Colours are presentation attributes, not `style`: the page's CSP allows no inline style.
impl Render for TimelineChart<'_> {
    fn render(&self) -> Markup {
        let l = self.layout();
        let c = self.theme.colors();
        let (width, height) = (fixed(l.width, 0), fixed(l.height, 0));
        html! {
            svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
                viewBox={ "0 0 " (width) " " (height) } role="img" aria-label=(self.title)
                font-family="sans-serif" font-size="11" fill=(c.text) {
                @if self.theme == Theme::Paper { rect width="100%" height="100%" fill="white" {} }
                text x="10" y="18" font-size="13" { (self.title) }
                @for t in &l.ticks {
                    line x1=(fixed(t.x, 1)) y1=(l.top) x2=(fixed(t.x, 1)) y2=(l.bottom)
                        stroke=(c.grid) {}
                    text x=(fixed(t.x, 1)) y=(fixed(l.tick_y, 0)) text-anchor="middle"
                        fill=(c.tick) { (t.seconds) }
                }
                @for r in &l.rows { (self.row(r)) }
                @for k in &l.legend {
                    rect x=(fixed(k.swatch_x, 0)) y=(fixed(k.swatch_y, 0)) width="12" height="12"
                        fill=(k.phase.color) {}
                    text x=(fixed(k.text_x, 0)) y=(fixed(k.text_y, 0)) { (k.phase.label) }
                }
            }
        }
    }
}

/// `v` with `places` decimals.
fn fixed(v: f64, places: usize) -> String {
    format!("{v:.places$}")
}

fn nice_step(span: f64) -> f64 {
    [
        0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ]
    .into_iter()
    .find(|s| span / s <= 12.0)
    .unwrap_or(1200.0)
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

    /// Every text and attribute value is escaped where `maud` writes it: the title (also the
    /// aria-label), a row's label, link and anchor, the unfinished note and a phase's name.
    #[test]
    fn every_text_and_attribute_value_is_escaped() {
        const HOSTILE: &str = "<script>alert(\"x\") & 'y'</script>";
        const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&quot;) &amp; 'y'&lt;/script&gt;";
        let phases = [Phase {
            label: "<b>\"&",
            color: "#111",
        }];
        let chart = TimelineChart {
            title: HOSTILE.into(),
            phases: &phases,
            rows: vec![TimelineRow {
                label: HOSTILE.into(),
                ends: vec![Some(1.0)],
                limit: None,
                href: Some(HOSTILE.into()),
                anchor: Some(HOSTILE.into()),
            }],
            theme: Theme::Paper,
            unfinished: HOSTILE,
        };
        let svg = chart.svg();
        assert!(!svg.contains("<script") && !svg.contains("<b>"), "{svg}");
        // aria-label, title, label, href, id; the row ended, so no unfinished note.
        assert_eq!(svg.matches(ESCAPED).count(), 5, "{svg}");
        assert!(svg.contains(&format!("<a href=\"{ESCAPED}\">")), "{svg}");
        assert!(svg.contains(&format!("<g id=\"{ESCAPED}\">")), "{svg}");
        // The bar's tooltip and the legend.
        assert_eq!(svg.matches("&lt;b&gt;&quot;&amp;").count(), 2, "{svg}");

        let open = TimelineChart {
            rows: vec![TimelineRow {
                ends: vec![None],
                ..TimelineRow::default()
            }],
            ..chart
        };
        assert!(open
            .svg()
            .contains(&format!("fill=\"#c00\">{ESCAPED}</text>")));
    }

    /// The layout is numbers: bars from the fault on a scale 5% past the latest time, ticks
    /// at a round step, the limit line where its seconds fall, the legend left to right.
    #[test]
    fn layout_scales_bars_ticks_limit_and_legend() {
        let chart = TimelineChart {
            title: "t".into(),
            phases: &PHASES,
            rows: vec![TimelineRow {
                label: "r".into(),
                ends: vec![Some(1.0), Some(4.0)],
                limit: Some(2.0),
                ..TimelineRow::default()
            }],
            theme: Theme::Paper,
            unfinished: "",
        };
        let l = chart.layout();
        // The label is short: the plot starts at 150 px and is 620 px wide; 4.2 s span it.
        let x = |s: f64| 150.0 + s / 4.2 * 620.0;
        assert_eq!((l.width, l.height, l.bottom), (790.0, 132.0, 62.0));
        assert_eq!(
            l.ticks.iter().map(|t| t.seconds).collect::<Vec<_>>(),
            [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
        );
        let [a, b] = &l.rows[0].bars[..] else {
            panic!("{:?}", l.rows[0].bars)
        };
        assert_eq!(
            (a.x, a.width, a.from, a.to),
            (150.0, x(1.0) - 150.0, 0.0, 1.0)
        );
        assert_eq!(
            (b.x, b.width, b.from, b.to),
            (x(1.0), x(4.0) - x(1.0), 1.0, 4.0)
        );
        assert_eq!(l.rows[0].unfinished_x, None);
        assert_eq!(
            l.rows[0].limit,
            Some(LimitMark {
                x: x(2.0),
                y1: 42.0,
                y2: 60.0,
                seconds: 2.0
            })
        );
        let keys: Vec<(&str, f64)> = l
            .legend
            .iter()
            .map(|k| (k.phase.label, k.swatch_x))
            .collect();
        assert_eq!(keys, [("a", 10.0), ("b", 47.0), ("limit", 84.0)]);
    }
}
