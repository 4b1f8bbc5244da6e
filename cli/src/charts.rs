//! The dashboard's charts: SVG drawn on the server by plotters (shapes
//! only: the numbers around a chart are the page's own text, so no font
//! is needed), put into the pages as they are.

use std::ops::Range;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One run in a system's chart.
pub struct RunBar {
    /// Creates, updates and deletes it planned.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Deletes.
    pub delete: usize,
    /// Changes that failed (or were never reached).
    pub failed: usize,
    /// How long it took, in seconds (`None`: not ended).
    pub seconds: Option<f64>,
}

/// Width and height of a chart, in pixels.
const SIZE: (u32, u32) = (600, 140);
/// Room above the bars for a failure's mark.
const HEADROOM: f64 = 1.15;

// The pages' colours for the kinds of change (see `pages::STYLE`).
const CREATE: RGBColor = RGBColor(0x1e, 0x7d, 0x32);
const UPDATE: RGBColor = RGBColor(0xb3, 0x5c, 0x00);
const DELETE: RGBColor = RGBColor(0xc0, 0x1c, 0x28);
const FAILED: RGBColor = RGBColor(0x6a, 0x1b, 0x9a);
const LINE: RGBColor = RGBColor(0x4c, 0x56, 0x6a);

type Area<'a> = DrawingArea<SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws on an area with `x` and `y` (logical ranges, y upwards) mapped
/// onto the whole chart; the SVG document.
fn svg(x: Range<f64>, y: Range<f64>, draw: impl FnOnce(&Area<'_>) -> Result<(), String>) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        // Pixels go down, values up: the bottom row is the range's start.
        let (width, bottom, top) = (SIZE.0 as i32, SIZE.1 as i32, 0);
        let area = root.apply_coord_spec(Cartesian2d::<RangedCoordf64, RangedCoordf64>::new(
            x,
            y,
            (0..width, bottom..top),
        ));
        draw(&area)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Runs over time, oldest left: each run's changes as a bar stacked by
/// kind (creates, updates, deletes), a purple mark above a run with
/// failures, and the runs' durations as a line scaled to the longest.
/// With the largest bar and the longest duration, for the page to say.
pub fn runs(runs: &[RunBar]) -> Result<(String, usize, f64), String> {
    let most = runs
        .iter()
        .map(|r| r.create + r.update + r.delete)
        .max()
        .unwrap_or(0)
        .max(1);
    let longest = runs.iter().filter_map(|r| r.seconds).fold(0.0, f64::max);
    let top = most as f64 * HEADROOM;
    let chart = svg(0.0..runs.len().max(1) as f64, 0.0..top, |area| {
        for (i, r) in runs.iter().enumerate() {
            let x = i as f64;
            let (left, right) = (x + 0.15, x + 0.85);
            let mut base = 0.0;
            for (n, color) in [(r.create, CREATE), (r.update, UPDATE), (r.delete, DELETE)] {
                if n == 0 {
                    continue;
                }
                let up = base + n as f64;
                area.draw(&Rectangle::new([(left, base), (right, up)], color.filled()))
                    .map_err(|e| e.to_string())?;
                base = up;
            }
            if r.failed > 0 {
                let y = most as f64 * 1.05;
                area.draw(&Rectangle::new([(left, y), (right, top)], FAILED.filled()))
                    .map_err(|e| e.to_string())?;
            }
        }
        if longest > 0.0 {
            let scale = most as f64 / longest;
            let points: Vec<(f64, f64)> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i as f64 + 0.5, r.seconds? * scale)))
                .collect();
            area.draw(&PathElement::new(points, LINE.stroke_width(2)))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    Ok((chart, most, longest))
}

/// A loop's lag over time: each sync's latency in ms at its time (seconds
/// since the first shown), as a line; with the largest lag.
pub fn lag(points: &[(f64, f64)]) -> Result<(String, f64), String> {
    let span = points.last().map_or(1.0, |p| p.0).max(1.0);
    let most = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let chart = svg(0.0..span, 0.0..most * HEADROOM, |area| {
        area.draw(&PathElement::new(points.to_vec(), UPDATE.stroke_width(2)))
            .map_err(|e| e.to_string())
    })?;
    Ok((chart, most))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_a_stacked_bar_and_failures_are_marked() {
        let runs = [
            RunBar {
                create: 3,
                update: 1,
                delete: 0,
                failed: 0,
                seconds: Some(0.5),
            },
            RunBar {
                create: 0,
                update: 0,
                delete: 8,
                failed: 2,
                seconds: Some(2.0),
            },
        ];
        let (svg, most, longest) = super::runs(&runs).unwrap();
        assert_eq!((most, longest), (8, 2.0));
        assert!(svg.starts_with("<svg"), "{svg}");
        let count = |color: RGBColor| {
            svg.matches(&format!("fill=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2))
                .count()
        };
        // One rectangle per kind present in a run, one mark per failing run.
        assert_eq!(
            (count(CREATE), count(UPDATE), count(DELETE), count(FAILED)),
            (1, 1, 1, 1),
            "{svg}"
        );
        assert!(
            svg.contains("<polyline") || svg.contains("<path"),
            "the durations' line: {svg}"
        );
        // Bars stand on the chart's bottom edge: the first run's creates.
        let create = format!("fill=\"#{:02X}{:02X}{:02X}\"", CREATE.0, CREATE.1, CREATE.2);
        let rect = svg.lines().find(|l| l.contains(&create)).unwrap();
        let attr = |name: &str| -> u32 {
            let at = rect.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            rect[at..at + rect[at..].find('"').unwrap()].parse().unwrap()
        };
        assert_eq!(attr("y") + attr("height"), SIZE.1, "{rect}");
    }

    #[test]
    fn no_run_and_one_point_still_draw() {
        assert!(super::runs(&[]).unwrap().0.starts_with("<svg"));
        assert!(lag(&[(0.0, 104.0)]).unwrap().0.starts_with("<svg"));
    }
}
