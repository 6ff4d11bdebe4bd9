//! Self-contained HTML pages, and the sampling view (`sample --steps`) built on them;
//! the rescoring report (`score --report`, [`crate::rescore::report`]) is built on
//! them too.
//!
//! A page is one file that opens by double-click with no network: its style and script
//! are inlined, and its data is one JSON object in a `<script type="application/json">`
//! element that the script renders. Each number is written once, in the data; the
//! colours, hover texts and bars are derived from it in the browser, so the file stays
//! small and the numbers can be read back from it exactly.

pub mod steps;

use crate::files::write_atomic;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;

/// The style every page shares: the token colours, the sections, the legend.
const STYLE: &str = include_str!("page.css");
/// The script every page shares: `colour(logProb)` and the element helpers.
const COMMON_SCRIPT: &str = include_str!("common.js");

/// The page's data as JSON that cannot end its `<script>` element early: `<` is
/// written as `\u003c` (only strings hold one, and there it means the same).
fn embedded_json(data: &impl Serialize) -> Result<String> {
    Ok(serde_json::to_string(data)?.replace('<', "\\u003c"))
}

/// Text for HTML: `&`, `<`, `>` and `"` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Writes a page: `title`, the data that `script` renders into `<main>`. The file
/// appears whole or not at all.
pub(crate) fn write_page(
    path: &Path,
    title: &str,
    data: &impl Serialize,
    script: &str,
) -> Result<()> {
    let json = embedded_json(data)?;
    write_atomic(path, |w| {
        write!(
            w,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main id=\"page\"></main>\n\
             <script type=\"application/json\" id=\"data\">{json}</script>\n\
             <script>\n{COMMON_SCRIPT}{script}</script>\n</body>\n</html>\n",
            title = escape(title),
        )?;
        Ok(())
    })
}

/// A number rounded to `digits` decimals, as the CSV output prints it, so that the
/// page and the CSV hold the same value.
pub(crate) fn rounded(value: f64, digits: usize) -> f64 {
    format!("{value:.digits$}").parse().unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_json_never_closes_the_script_element() {
        let json = embedded_json(&["</script><script>alert(1)</script>"]).unwrap();
        assert!(!json.contains('<'), "{json}");
        let back: Vec<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ["</script><script>alert(1)</script>"]);
    }

    #[test]
    fn rounding_matches_the_printed_value() {
        assert_eq!(rounded(-12.345_678, 4).to_string(), "-12.3457");
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
