//! Small inline-SVG charts for `tailor report`: line charts (loss curves),
//! horizontal bars (counts by reason, metrics) and histograms (lengths).
//! Plain SVG text, no scripts or external resources, so a report is one
//! file that opens anywhere.

use std::fmt::Write;

/// A named series of (x, y) points.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
    /// CSS colour.
    pub color: &'static str,
    /// Draw markers only (no line), for sparse series like validation loss.
    pub markers: bool,
}

/// Escape text for SVG/HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn nice(v: f64) -> String {
    if v.abs() >= 1000.0 || (v.fract() == 0.0 && v.abs() < 1e6) {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn bounds(series: &[Series]) -> Option<(f64, f64, f64, f64)> {
    let pts = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return None;
    }
    if x1 == x0 {
        x1 = x0 + 1.0;
    }
    if y1 == y0 {
        y1 = y0 + 1.0;
    }
    Some((x0, x1, y0, y1))
}

/// A line chart with axes, four y ticks and a legend.
pub fn line_chart(series: &[Series], x_label: &str, y_label: &str) -> String {
    let (w, h, l, b) = (560.0, 240.0, 56.0, 36.0);
    let Some((x0, x1, y0, y1)) = bounds(series) else { return String::new() };
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - 10.0);
    let py = |y: f64| 10.0 + (1.0 - (y - y0) / (y1 - y0)) * (h - b - 10.0);
    let mut s =
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><line x1=\"{l}\" y1=\"10\" x2=\"{l}\" y2=\"{}\" stroke=\"#333\"/>",
        h - b,
        w - 10.0,
        h - b,
        h - b
    );
    for k in 0..=3 {
        let y = y0 + (y1 - y0) * f64::from(k) / 3.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><line x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            l - 4.0,
            py(y) + 4.0,
            nice(y),
            w - 10.0,
            py(y),
            py(y)
        );
    }
    let _ =
        write!(s, "<text x=\"{l}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", h - 20.0, nice(x0), w - 10.0, h - 20.0, nice(x1));
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">{}</text>",
        (w + l) / 2.0,
        h - 4.0,
        esc(x_label),
        h / 2.0,
        h / 2.0,
        esc(y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let pts: Vec<String> = se.points.iter().filter(|p| p.1.is_finite()).map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        if se.markers {
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(s, "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"3\" fill=\"{}\"/>", se.color);
            }
        } else {
            let _ = write!(s, "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>", se.color, pts.join(" "));
        }
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            w - 150.0,
            14.0 + i as f64 * 14.0,
            se.color,
            w - 136.0,
            23.0 + i as f64 * 14.0,
            esc(&se.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars with their labels and values.
pub fn bars(items: &[(String, f64)], color: &str) -> String {
    if items.is_empty() {
        return String::new();
    }
    let (w, row, l) = (560.0, 20.0, 220.0);
    let h = items.len() as f64 * row + 8.0;
    let max = items.iter().map(|i| i.1).fold(0.0f64, f64::max).max(1e-12);
    let mut s =
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 4.0 + i as f64 * row;
        let bw = (v / max) * (w - l - 70.0);
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{l}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            l - 6.0,
            y + 12.0,
            esc(label),
            row - 6.0,
            l + bw + 4.0,
            y + 12.0,
            nice(*v)
        );
    }
    s.push_str("</svg>");
    s
}

/// A histogram of `values` in `bins` equal-width bins.
pub fn histogram(values: &[f64], bins: usize, x_label: &str) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() || bins == 0 {
        return String::new();
    }
    let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let width = ((hi - lo) / bins as f64).max(1e-9);
    let mut counts = vec![0usize; bins];
    for v in &finite {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    let (w, h, l, b) = (560.0, 180.0, 40.0, 32.0);
    let max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bw = (w - l - 10.0) / bins as f64;
    let mut s =
        format!("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">");
    for (i, c) in counts.iter().enumerate() {
        let bh = *c as f64 / max * (h - b - 10.0);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#6b8fc9\"><title>{}–{}: {c}</title></rect>",
            l + i as f64 * bw,
            h - b - bh,
            (bw - 1.0).max(1.0),
            nice(lo + i as f64 * width),
            nice(lo + (i + 1) as f64 * width)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{l}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"14\" text-anchor=\"end\">max {}</text>",
        h - b,
        w - 10.0,
        h - b,
        h - b + 14.0,
        nice(lo),
        w - 10.0,
        h - b + 14.0,
        nice(hi),
        (w + l) / 2.0,
        h - 4.0,
        esc(x_label),
        l - 4.0,
        max
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_and_escape_labels() {
        let c = line_chart(
            &[Series { name: "train <loss>".into(), points: vec![(1.0, 3.0), (2.0, 2.0), (3.0, 1.5)], color: "#c33", markers: false }],
            "step",
            "loss",
        );
        assert!(c.starts_with("<svg") && c.ends_with("</svg>"));
        assert!(c.contains("train &lt;loss&gt;") && c.contains("<polyline"));
        let b = bars(&[("exact duplicate".into(), 93.0), ("near".into(), 5.0)], "#999");
        assert_eq!(b.matches("<rect").count(), 2);
        let h = histogram(&[1.0, 2.0, 2.0, 3.0, 10.0], 3, "tokens");
        assert_eq!(h.matches("<rect").count(), 3);
        assert!(h.contains(": 4</title>"), "{h}");
        assert_eq!(line_chart(&[], "x", "y"), "");
    }
}
