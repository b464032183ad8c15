//! `tutorctl bench --svg FILE`: the plan as a picture, hand-written SVG.
//!
//! Left, the roofline: x = arithmetic intensity (operations per byte read, per decoded
//! token), y = attained op/s (predicted tokens/s × operations per token), both logarithmic.
//! Only with op/s on y are the roofs the same for every model: the bandwidth roof is the
//! slope bandwidth × efficiency × intensity, the compute roof the flat peak × efficiency.
//! Right, what a person asks next: each candidate's predicted tokens/s against the target, a
//! horizontal line (in op/s the target would be a different height for every model).

use std::fmt::Write;

use super::plan::{Candidate, PlanView};

/// One backend's roofs, efficiencies applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Roof {
    pub backend: String,
    /// Bytes/s: measured read bandwidth × memory efficiency.
    pub bandwidth: f64,
    /// Op/s: compute peak × compute efficiency.
    pub compute: f64,
}

impl Roof {
    /// The intensity where the roofs meet.
    pub fn ridge(&self) -> f64 {
        self.compute / self.bandwidth
    }
}

/// The roofs of every backend that has a candidate. The CPU's from the measured figures ×
/// the calibrated efficiencies; an accelerator's peak comes from the board profile, which
/// `Plan()` does not list, so from its candidate: ops per token ÷ compute seconds per token.
pub fn roofs(p: &PlanView) -> Vec<Roof> {
    let Some(bench) = &p.machine.bench else {
        return Vec::new();
    };
    let mut out: Vec<Roof> = Vec::new();
    for c in &p.candidates {
        if out.iter().any(|r| r.backend == c.backend) {
            continue;
        }
        let eff = p.machine.efficiencies.get(&c.backend);
        let bandwidth = match eff {
            Some(e) if e.memory > 0.0 => bench.read * e.memory,
            _ => c.bytes_per_token / c.bandwidth_seconds,
        };
        let compute = match eff {
            Some(e) if c.backend == "cpu" && e.compute > 0.0 => bench.compute_ops * e.compute,
            _ => c.ops_per_token / c.compute_seconds,
        };
        if bandwidth.is_finite() && compute.is_finite() && bandwidth > 0.0 && compute > 0.0 {
            out.push(Roof {
                backend: c.backend.clone(),
                bandwidth,
                compute,
            });
        }
    }
    out
}

/// A logarithmic axis: whole decades `lo..hi` drawn from pixel `from` to pixel `to` (for a
/// y axis `from` is the bottom, the larger pixel).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogAxis {
    pub lo: f64,
    pub hi: f64,
    pub from: f64,
    pub to: f64,
}

impl LogAxis {
    /// The whole decades around `values` (positive, finite ones), at least one decade.
    pub fn covering(values: impl IntoIterator<Item = f64>, from: f64, to: f64) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
        Self { lo, hi, from, to }
    }

    pub fn px(&self, v: f64) -> f64 {
        let t = (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        self.from + t * (self.to - self.from)
    }

    fn decades(&self) -> Vec<f64> {
        let n = (self.hi / self.lo).log10().round() as i32;
        (0..=n).map(|i| self.lo * 10f64.powi(i)).collect()
    }
}

/// The roof as a line in pixels: up the slope from the left edge (or from where it enters
/// the plot) to the ridge, then flat to the right edge.
pub fn roof_points(r: &Roof, x: &LogAxis, y: &LogAxis) -> Vec<(f64, f64)> {
    let start = x.lo.max(y.lo / r.bandwidth);
    let ridge = r.ridge().clamp(start, x.hi);
    vec![
        (x.px(start), y.px(r.bandwidth * start)),
        (x.px(ridge), y.px(r.compute.min(r.bandwidth * ridge))),
        (x.px(x.hi), y.px(r.compute.min(r.bandwidth * x.hi))),
    ]
}

const WIDTH: f64 = 980.0;
const HEIGHT: f64 = 640.0;
const TOP: f64 = 80.0;
const BOTTOM: f64 = 440.0;
/// The roofline's plot area.
const LEFT_X: (f64, f64) = (90.0, 590.0);
/// The speed chart's plot area.
const RIGHT_X: (f64, f64) = (690.0, 880.0);
const BACKEND_COLOURS: [&str; 3] = ["#1f6fb4", "#2a9d4b", "#8e44ad"];
const CHOSEN: &str = "#e8590c";
const TARGET: &str = "#c92a2a";

/// The whole picture.
pub fn svg(p: &PlanView) -> String {
    let roofs = roofs(p);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>"#
    );
    title(&mut s, p);
    roofline_panel(&mut s, p, &roofs);
    speed_panel(&mut s, p);
    footer(&mut s, p);
    s.push_str("</svg>\n");
    s
}

fn title(s: &mut String, p: &PlanView) {
    let m = &p.machine;
    let measured = match &m.bench {
        None => "bandwidth not measured yet".to_string(),
        Some(b) if b.theoretical > 0.0 => format!(
            "read {:.1} GB/s measured ({:.0} % of {:.1} GB/s theoretical), compute {:.0} GOP/s",
            b.read / 1e9,
            100.0 * b.read / b.theoretical,
            b.theoretical / 1e9,
            b.compute_ops / 1e9
        ),
        Some(b) => format!(
            "read {:.1} GB/s measured, compute {:.0} GOP/s",
            b.read / 1e9,
            b.compute_ops / 1e9
        ),
    };
    text(
        s,
        (20.0, 30.0),
        &format!("tutord plan on {}: {measured}", m.board),
        "font-size=\"16\" font-weight=\"bold\"",
    );
    let chosen = match p.chosen() {
        Some(c) => format!(
            "Chosen: {} on {}, predicted {:.1} tokens/s (target {:.1})",
            c.model, c.backend, c.tokens_per_second, m.target_tokens_per_second
        ),
        None => "No model chosen".to_string(),
    };
    text(s, (20.0, 52.0), &chosen, &format!("fill=\"{CHOSEN}\""));
}

fn roofline_panel(s: &mut String, p: &PlanView, roofs: &[Roof]) {
    let points: Vec<(f64, f64)> = p
        .candidates
        .iter()
        .map(|c| (c.intensity(), c.tokens_per_second * c.ops_per_token))
        .collect();
    let x = LogAxis::covering(
        points
            .iter()
            .flat_map(|(i, _)| [i / 2.0, i * 2.0])
            .chain(roofs.iter().map(|r| r.ridge() * 2.0)),
        LEFT_X.0,
        LEFT_X.1,
    );
    let y = LogAxis::covering(
        points
            .iter()
            .map(|(_, o)| o / 2.0)
            .chain(roofs.iter().map(|r| r.compute * 2.0)),
        BOTTOM,
        TOP,
    );
    frame(s, LEFT_X, "Roofline: why each model is as fast as it is");
    for v in x.decades() {
        gridline(s, (x.px(v), TOP), (x.px(v), BOTTOM));
        text(
            s,
            (x.px(v), BOTTOM + 16.0),
            &number(v),
            "text-anchor=\"middle\"",
        );
    }
    for v in y.decades() {
        gridline(s, (LEFT_X.0, y.px(v)), (LEFT_X.1, y.px(v)));
        let label = format!("{}OP/s", si(v));
        text(
            s,
            (LEFT_X.0 - 6.0, y.px(v) + 4.0),
            &label,
            "text-anchor=\"end\"",
        );
    }
    text(
        s,
        ((LEFT_X.0 + LEFT_X.1) / 2.0, BOTTOM + 36.0),
        "arithmetic intensity: operations per byte read, per decoded token (log)",
        "text-anchor=\"middle\"",
    );
    let mid = (TOP + BOTTOM) / 2.0;
    text(
        s,
        (24.0, mid),
        "OP/s attained = tokens/s × operations per token (log)",
        &format!("text-anchor=\"middle\" transform=\"rotate(-90 24 {mid})\""),
    );
    for (i, r) in roofs.iter().enumerate() {
        roof(s, r, &x, &y, BACKEND_COLOURS[i % BACKEND_COLOURS.len()], i);
    }
    let placed: Vec<(f64, f64)> = points.iter().map(|&(i, o)| (x.px(i), y.px(o))).collect();
    // Labels below and right of their points: the roofs rise to the right, above them.
    let labels = spread(&placed.iter().map(|p| p.1 + 20.0).collect::<Vec<_>>(), 15.0);
    for ((c, &(px, py)), ly) in p.candidates.iter().zip(&placed).zip(labels) {
        point(s, c, (px, py));
        line(s, (px + 4.0, py + 4.0), (px + 24.0, ly - 4.0), "#999", "");
        let label = format!(
            "{} ({}) {:.1} tok/s",
            c.model, c.backend, c.tokens_per_second
        );
        text(s, (px + 27.0, ly), &label, &label_style(c));
    }
}

fn speed_panel(s: &mut String, p: &PlanView) {
    let target = p.machine.target_tokens_per_second;
    let y = LogAxis::covering(
        p.candidates
            .iter()
            .map(|c| c.tokens_per_second)
            .chain([target]),
        BOTTOM,
        TOP,
    );
    frame(s, RIGHT_X, "Predicted decode speed");
    for v in y.decades() {
        gridline(s, (RIGHT_X.0, y.px(v)), (RIGHT_X.1, y.px(v)));
        text(
            s,
            (RIGHT_X.0 - 6.0, y.px(v) + 4.0),
            &number(v),
            "text-anchor=\"end\"",
        );
    }
    let mid = (TOP + BOTTOM) / 2.0;
    let yx = RIGHT_X.0 - 46.0;
    text(
        s,
        (yx, mid),
        "tokens/s (log)",
        &format!("text-anchor=\"middle\" transform=\"rotate(-90 {yx} {mid})\""),
    );
    if target > 0.0 {
        let ty = y.px(target);
        line(
            s,
            (RIGHT_X.0, ty),
            (RIGHT_X.1, ty),
            TARGET,
            "stroke-width=\"2\" stroke-dasharray=\"6 4\"",
        );
        let style = format!("fill=\"{TARGET}\" font-weight=\"bold\"");
        text(s, (RIGHT_X.1 + 6.0, ty - 3.0), "target", &style);
        text(
            s,
            (RIGHT_X.1 + 6.0, ty + 12.0),
            &format!("{target:.1} tok/s"),
            &style,
        );
    }
    let n = p.candidates.len().max(1) as f64;
    let step = (RIGHT_X.1 - RIGHT_X.0) / n;
    for (i, c) in p.candidates.iter().enumerate() {
        let px = RIGHT_X.0 + step * (i as f64 + 0.5);
        let py = y.px(c.tokens_per_second);
        line(s, (px, BOTTOM), (px, py), "#bbb", "stroke-width=\"3\"");
        point(s, c, (px, py));
        let value = format!("{:.1}", c.tokens_per_second);
        text(s, (px, py - 10.0), &value, "text-anchor=\"middle\"");
        let name = format!("{} ({})", c.model, c.backend);
        let (nx, ny) = (px + 4.0, BOTTOM + 14.0);
        let style = format!(
            "{} text-anchor=\"end\" transform=\"rotate(-35 {nx} {ny})\"",
            label_style(c)
        );
        text(s, (nx, ny), &name, &style);
    }
}

fn footer(s: &mut String, p: &PlanView) {
    let mut lines = vec![
        "Roofs: measured read bandwidth × memory efficiency (slope), compute peak × compute \
         efficiency (flat)."
            .to_string(),
        "Points: the planner's predictions, below the roof by the per-token overhead; \
         filled = fetched, hollow = not fetched, grey = does not fit, orange = chosen."
            .to_string(),
    ];
    if let Some(r) = &p.machine.reason {
        lines.push(format!("Choice: {r}"));
    }
    if let Some(w) = &p.machine.warning {
        lines.push(format!("Warning: {w}"));
    }
    for (i, l) in lines.iter().enumerate() {
        text(
            s,
            (20.0, HEIGHT - 58.0 + 16.0 * i as f64),
            l,
            "fill=\"#444\"",
        );
    }
}

fn roof(s: &mut String, r: &Roof, x: &LogAxis, y: &LogAxis, colour: &str, nth: usize) {
    let pts = roof_points(r, x, y);
    let list: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2.5"/>"#,
        list.join(" ")
    );
    // Labels: the flat roof's above it at the right, the slope's along it.
    let dy = 14.0 * nth as f64;
    let flat = format!("compute roof ({}): {}OP/s", r.backend, si(r.compute));
    text(
        s,
        (LEFT_X.1 - 4.0, pts[2].1 - 6.0 - dy),
        &flat,
        &format!("text-anchor=\"end\" fill=\"{colour}\""),
    );
    let (a, b) = (pts[0], pts[1]);
    let angle = (b.1 - a.1).atan2(b.0 - a.0).to_degrees();
    // Above the slope and ending at the ridge: the points sit on the slope, their labels
    // below it.
    let (lx, ly) = (
        a.0 + (b.0 - a.0) * 0.95,
        a.1 + (b.1 - a.1) * 0.95 - 8.0 - dy,
    );
    let slope = format!(
        "bandwidth roof ({}): {:.1} GB/s",
        r.backend,
        r.bandwidth / 1e9
    );
    text(
        s,
        (lx, ly),
        &slope,
        &format!(
            "text-anchor=\"end\" fill=\"{colour}\" transform=\"rotate({angle:.1} {lx:.1} {ly:.1})\""
        ),
    );
}

fn point(s: &mut String, c: &Candidate, (x, y): (f64, f64)) {
    let (r, fill, stroke) = match (c.chosen, c.fits, c.present) {
        (true, _, _) => (8.0, CHOSEN, "#000"),
        (_, false, _) => (5.0, "#ccc", "#888"),
        (_, true, true) => (5.0, "#333", "#333"),
        (_, true, false) => (5.0, "white", "#333"),
    };
    let _ = writeln!(
        s,
        r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"><title>{}</title></circle>"#,
        escape(&format!(
            "{} ({}): {:.1} tok/s, {}-bound, first token {:.2} s",
            c.model, c.backend, c.tokens_per_second, c.binding, c.first_token_seconds
        ))
    );
}

fn label_style(c: &Candidate) -> String {
    if c.chosen {
        format!("fill=\"{CHOSEN}\" font-weight=\"bold\"")
    } else {
        "fill=\"#222\"".into()
    }
}

fn frame(s: &mut String, (x0, x1): (f64, f64), caption: &str) {
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{TOP}" width="{}" height="{}" fill="#fafafa" stroke="#888"/>"##,
        x1 - x0,
        BOTTOM - TOP
    );
    text(s, (x0, TOP - 8.0), caption, "font-weight=\"bold\"");
}

fn gridline(s: &mut String, a: (f64, f64), b: (f64, f64)) {
    line(s, a, b, "#e2e2e2", "");
}

fn line(s: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), colour: &str, extra: &str) {
    let _ = writeln!(
        s,
        r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{colour}" {extra}/>"#
    );
}

/// A text element; `attrs` are trusted attributes written by this module, `content` is
/// escaped.
fn text(s: &mut String, (x, y): (f64, f64), content: &str, attrs: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{x:.1}" y="{y:.1}" {attrs}>{}</text>"#,
        escape(content)
    );
}

/// Label heights for points at pixel heights `ys`, at least `gap` apart, in the same order.
pub fn spread(ys: &[f64], gap: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..ys.len()).collect();
    order.sort_by(|a, b| ys[*a].total_cmp(&ys[*b]));
    let mut out = ys.to_vec();
    let mut last = f64::NEG_INFINITY;
    for i in order {
        out[i] = ys[i].max(last + gap);
        last = out[i];
    }
    out
}

/// Text safe inside an element or a quoted attribute.
pub fn escape(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for ch in t.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A decade as a short number: 0.1, 1, 10, 1000.
fn number(v: f64) -> String {
    if v >= 1e4 { si(v) } else { format!("{v}") }
}

/// A decade with an SI prefix and a trailing space for the unit: "10 G", "1 T".
fn si(v: f64) -> String {
    const PREFIXES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, prefix) in PREFIXES {
        if v >= scale {
            return format!("{} {prefix}", trim(v / scale));
        }
    }
    format!("{} ", trim(v))
}

fn trim(v: f64) -> String {
    let t = format!("{v:.1}");
    t.strip_suffix(".0").map(str::to_string).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::plan::tests::sample;

    fn view() -> PlanView {
        let (m, c) = sample();
        PlanView::from_dicts(&m, &c)
    }

    /// A tiny XML well-formedness check: one root, tags balanced and properly nested,
    /// attribute values quoted, no raw `<` or stray `&` in text or values.
    fn check_xml(doc: &str) -> Result<usize, String> {
        let mut rest = doc.trim_start();
        if let Some(r) = rest.strip_prefix("<?xml") {
            rest = &r[r.find("?>").ok_or("unclosed prolog")? + 2..];
        }
        let (mut stack, mut roots, mut elements) = (Vec::<String>::new(), 0, 0);
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            if stack.is_empty() && !rest[..open].trim().is_empty() {
                return Err("text outside the root".into());
            }
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(top) if top == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == ':') {
                return Err(format!("bad element name in <{tag}>"));
            }
            check_attributes(&tag[name.len()..])?;
            if stack.is_empty() {
                roots += 1;
            }
            elements += 1;
            if !self_closing {
                stack.push(name);
            }
        }
        check_text(rest)?;
        match (stack.is_empty(), roots, rest.trim().is_empty()) {
            (true, 1, true) => Ok(elements),
            _ => Err(format!("unbalanced: open {stack:?}, {roots} roots")),
        }
    }

    fn check_text(t: &str) -> Result<(), String> {
        let mut parts = t.split('&');
        parts.next();
        for p in parts {
            let entity = p.split(';').next().unwrap_or("");
            if !p.contains(';') || !["amp", "lt", "gt", "quot", "apos"].contains(&entity) {
                return Err(format!("stray & before {p:?}"));
            }
        }
        Ok(())
    }

    fn check_attributes(mut a: &str) -> Result<(), String> {
        loop {
            a = a.trim_start();
            if a.is_empty() {
                return Ok(());
            }
            let eq = a
                .find("=\"")
                .ok_or(format!("attribute without =\"…\": {a}"))?;
            let name = &a[..eq];
            if !name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == ':')
            {
                return Err(format!("bad attribute name {name:?}"));
            }
            let end = a[eq + 2..].find('"').ok_or("unclosed value")? + eq + 2;
            let value = &a[eq + 2..end];
            if value.contains('<') {
                return Err(format!("< in attribute value {value:?}"));
            }
            check_text(value)?;
            a = &a[end + 1..];
        }
    }

    #[test]
    fn the_checker_catches_broken_xml() {
        assert_eq!(check_xml("<a><b x=\"1\"/>t &amp; u</a>"), Ok(2));
        for bad in [
            "<a><b></a></b>",
            "<a>",
            "<a></a><b/>",
            "<a>x & y</a>",
            "<a x=1/>",
            "<a x=\"<\"/>",
        ] {
            assert!(check_xml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_picture_is_well_formed_and_names_every_model() {
        let v = view();
        let doc = svg(&v);
        let elements = check_xml(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert!(elements > 30, "{elements}");
        // The model name with markup in it arrives escaped, in both panels.
        // (label, hover title and axis name: four times)
        assert_eq!(doc.matches("small&lt;&amp;&gt; (cpu)").count(), 4, "{doc}");
        assert!(doc.contains("big (cpu) 3.1 tok/s"), "{doc}");
        assert!(doc.contains(">target</text>") && doc.contains(">5.0 tok/s</text>"));
        assert!(doc.contains("compute roof (cpu): 50 GOP/s"), "{doc}");
        assert!(doc.contains("bandwidth roof (cpu): 15.0 GB/s"));
        assert!(doc.contains(&format!("fill=\"{CHOSEN}\" stroke=\"#000\"")));
        // Nothing measured, nothing to choose: still a picture.
        check_xml(&svg(&PlanView::default())).unwrap();
    }

    #[test]
    fn roofs_are_the_measured_figures_times_the_efficiencies() {
        let r = roofs(&view());
        assert_eq!(
            r,
            [Roof {
                backend: "cpu".into(),
                bandwidth: 20e9 * 0.75,
                compute: 100e9 * 0.5,
            }]
        );
        assert!((r[0].ridge() - 10.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn log_axes_map_decades_to_pixels() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let x = LogAxis::covering([2.7, 0.5, 6.6], 100.0, 400.0);
        assert!(close(x.lo, 0.1) && close(x.hi, 10.0), "{x:?}");
        assert!(close(x.px(0.1), 100.0));
        assert!(close(x.px(1.0), 250.0));
        assert!(close(x.px(10.0), 400.0));
        // y grows upwards: the bottom pixel is `from`.
        let y = LogAxis::covering([3e10, 2e11], 440.0, 80.0);
        assert!(close(y.lo, 1e10) && close(y.hi, 1e12), "{y:?}");
        assert!(close(y.px(1e11), 260.0));
        // A single value still gets a decade.
        let one = LogAxis::covering([1.0], 0.0, 1.0);
        assert_eq!((one.lo, one.hi), (1.0, 10.0));
        assert_eq!(LogAxis::covering([], 0.0, 1.0).hi, 10.0);
    }

    #[test]
    fn roof_line_rises_to_the_ridge_then_stays_flat() {
        let r = Roof {
            backend: "cpu".into(),
            bandwidth: 1e10,
            compute: 1e11,
        };
        // x 1..100 over pixels 0..200, y 1e9..1e12 over 300..0: the ridge is at 10 op/B.
        let x = LogAxis {
            lo: 1.0,
            hi: 100.0,
            from: 0.0,
            to: 200.0,
        };
        let y = LogAxis {
            lo: 1e9,
            hi: 1e12,
            from: 300.0,
            to: 0.0,
        };
        let p = roof_points(&r, &x, &y);
        let near =
            |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9;
        // 1 op/B × 10 GB/s = 1e10 op/s: one decade up from the bottom.
        assert!(near(p[0], (0.0, 200.0)), "{p:?}");
        assert!(near(p[1], (100.0, 100.0)), "{p:?}");
        assert!(near(p[2], (200.0, 100.0)), "{p:?}");
        // A slope that starts below the plot enters it at the bottom edge.
        let low = Roof {
            bandwidth: 1e8,
            ..r
        };
        let p = roof_points(&low, &x, &y);
        assert!(near(p[0], (100.0, 300.0)), "{p:?}");
    }

    #[test]
    fn labels_keep_apart_and_in_place() {
        assert_eq!(spread(&[100.0, 105.0, 300.0], 15.0), [100.0, 115.0, 300.0]);
        assert_eq!(spread(&[50.0, 40.0], 15.0), [55.0, 40.0]);
        assert_eq!(escape("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&apos;");
        assert_eq!(si(1e9), "1 G");
        assert_eq!(si(5e10), "50 G");
        assert_eq!(number(0.1), "0.1");
    }
}
